"use strict";
// Everything shown comes from /admin/status and is set with textContent or setAttribute:
// SNI names and config errors are attacker-influenced strings, never parsed as HTML.
const byId = (id) => document.getElementById(id);
let previous = null;

function cell(value, cls) {
  const td = document.createElement("td");
  if (value instanceof Node) {
    td.appendChild(value);
  } else {
    td.textContent = value === null || value === undefined ? "-" : String(value);
  }
  if (cls) td.className = cls;
  return td;
}

function flag(good, yes, no) {
  const span = document.createElement("span");
  span.textContent = good ? yes : no;
  span.className = good ? "ok" : "bad";
  return span;
}

function rate(now, before, seconds) {
  if (before === undefined || seconds <= 0) return "-";
  return ((now - before) / seconds).toFixed(2);
}

function routeRows(status) {
  const seconds = previous ? status.now_unix - previous.now_unix : 0;
  const before = new Map((previous ? previous.routes : []).map((r) => [r.name, r]));
  return status.routes.map((r) => {
    const tr = document.createElement("tr");
    tr.setAttribute("data-route", r.name);
    const old = before.get(r.name) || {};
    const target = r.upstream === null ? r.action : r.action + " → " + r.upstream;
    tr.append(
      cell(r.name),
      cell((r.host === null ? "*" : r.host) + r.path),
      cell(target),
      cell(r.requests, "num"),
      cell(rate(r.requests, old.requests, seconds), "num"),
      cell(r.errors, r.errors > 0 ? "num bad" : "num"),
      cell(rate(r.errors, old.errors, seconds), "num"),
      cell(r.rate_limited, "num"),
    );
    return tr;
  });
}

function replicaRows(status) {
  const rows = [];
  for (const up of status.upstreams) {
    if (up.replicas.length === 0) {
      const tr = document.createElement("tr");
      tr.append(cell(up.name), cell("no replica resolved", "bad"));
      rows.push(tr);
    }
    for (const r of up.replicas) {
      const tr = document.createElement("tr");
      tr.setAttribute("data-replica", up.name + "/" + r.addr);
      tr.append(
        cell(up.name),
        cell(r.addr),
        cell(flag(r.live, "live", "down")),
        cell(flag(r.ready, "ready", "not ready")),
        cell(flag(!r.ejected, "no", "ejected")),
        cell(r.in_flight, "num"),
        cell(r.ewma_ms.toFixed(2) + " ms", "num"),
      );
      rows.push(tr);
    }
  }
  return rows;
}

function configErrors(status) {
  const items = [];
  for (const up of status.upstreams) {
    for (const message of up.config_errors) {
      const li = document.createElement("li");
      li.textContent = up.name + ": " + message;
      items.push(li);
    }
  }
  return items;
}

function certificateRows(status) {
  return status.certificates.map((c) => {
    const tr = document.createElement("tr");
    const expires = new Date(c.not_after_unix * 1000).toISOString().slice(0, 10);
    const days = Math.floor(c.days_left);
    tr.append(
      cell(c.names.join(", ") + (c.default ? " (default)" : "")),
      cell(c.source),
      cell(expires),
      cell(days, days < 14 ? "num bad" : days < 30 ? "num warn" : "num"),
    );
    return tr;
  });
}

function reloadText(status) {
  const r = status.reload;
  if (r === null) return "no reload since start (generation " + status.generation + ")";
  const at = new Date(r.at_unix * 1000).toISOString().replace("T", " ").slice(0, 19);
  return r.outcome + " at " + at + " UTC" + (r.error ? ": " + r.error : "");
}

function render(status) {
  byId("summary").textContent =
    "version " + status.version + " · " + (status.ready ? "ready" : "NOT READY") +
    " · up " + Math.floor(status.uptime_s) + " s · " + status.totals.requests +
    " requests, " + status.totals.errors + " 5xx";
  byId("routes").replaceChildren(...routeRows(status));
  byId("replicas").replaceChildren(...replicaRows(status));
  byId("config-errors").replaceChildren(...configErrors(status));
  byId("certificates").replaceChildren(...certificateRows(status));
  const reload = byId("reload");
  reload.textContent = reloadText(status);
  reload.className = status.reload && status.reload.outcome === "failed" ? "bad" : "";
  previous = status;
}

async function refresh() {
  try {
    const resp = await fetch("/admin/status", { cache: "no-store", credentials: "same-origin" });
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    render(await resp.json());
    byId("error").textContent = "";
  } catch (err) {
    byId("error").textContent = "cannot load /admin/status: " + err.message;
  }
  setTimeout(refresh, 2000);
}

refresh();
