// edgeward demo front end: asks the demo app (behind /api) what it received.
const out = document.querySelector("#echo");
const show = async () => {
  const started = performance.now();
  const response = await fetch("/api/echo", { headers: { "X-Forwarded-For": "6.6.6.6" } });
  const body = await response.json();
  const ms = (performance.now() - started).toFixed(1);
  const h = body.headers;
  out.textContent = [
    `GET /api/echo -> ${response.status} in ${ms} ms; the app saw path ${body.path}`,
    `x-forwarded-for:    ${h["x-forwarded-for"]}   (the 6.6.6.6 this page sent was dropped)`,
    `x-forwarded-proto:  ${h["x-forwarded-proto"]}`,
    `x-forwarded-host:   ${h["x-forwarded-host"]}`,
    `x-forwarded-prefix: ${h["x-forwarded-prefix"]}`,
    `x-request-id:       ${h["x-request-id"]}`,
  ].join("\n");
};
document.querySelector("#again").addEventListener("click", show);
show().catch((err) => { out.textContent = `the demo app did not answer: ${err}`; });
