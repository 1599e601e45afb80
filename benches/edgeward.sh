# Load-benchmark candidate for ../shared/bench (see benches/README.md): edgeward on the shipped
# defaults for everything the job does not turn off (request ids, forwarding headers), with
# the access log off as for every candidate.
# Build first: cargo build --release. EDGEWARD_BIN overrides the binary. Variant candidates
# (benches/edgeward-*.sh) set EDGEWARD_ROUTE_EXTRA (keys for the /api route),
# EDGEWARD_UPSTREAM_EXTRA (keys for the api upstream), EDGEWARD_CONFIG_EXTRA (more sections)
# or EDGEWARD_ACCESS_LOG=true (an access log file in the work dir) and source this file.

CAND_FEATURES="http tls h2 static"
CAND_DESC="edgeward, shipped defaults, server.workers = 1"

_edgeward_bin() {
  echo "${EDGEWARD_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/release/edgeward}"
}

cand_version() {
  "$(_edgeward_bin)" --version 2>&1 | head -1
}

cand_start() {
  local W="$BENCH_WORKDIR" u replicas="" access="access_log = false"
  for u in $BENCH_UPSTREAMS; do replicas+="\"$u\", "; done
  if [[ "${EDGEWARD_ACCESS_LOG:-false}" == true ]]; then
    access="access_log = true
access_log_file = \"$W/access.log\""
  fi
  cat >"$W/edgeward.toml" <<EOF2
[listeners.public]
listen = "$BENCH_LISTEN_HOST:$BENCH_HTTP_PORT"

[listeners.secure]
listen = "$BENCH_LISTEN_HOST:$BENCH_HTTPS_PORT"
tls = true

[[tls.certificates]]
cert = "$BENCH_CERT"
key = "$BENCH_KEY"

[server]
workers = $BENCH_THREADS
# Every benchmark client connects from 127.0.0.1; the default per-address bound (256) would
# refuse most of mem_idle's 5,000 connections.
max_connections_per_ip = 0

[admin]
listen = "127.0.0.1:0"

[log]
level = "warn"
${access}

[upstreams.api]
replicas = [${replicas}]
max_connections = 512
# The job asks for round-robin; the shipped default is p2c_ewma.
policy = "round_robin"
${EDGEWARD_UPSTREAM_EXTRA:-}

[[routes]]
path = "/api"
upstream = "api"
${EDGEWARD_ROUTE_EXTRA:-}

[[routes]]
path = "/assets"
static = { root = "$BENCH_STATIC_DIR/assets" }

${EDGEWARD_CONFIG_EXTRA:-}
EOF2
  exec "$(_edgeward_bin)" run --config "$W/edgeward.toml"
}
