# Variant of benches/edgeward.sh with everything the job does not need turned off: no request
# metrics, no active health probes (replicas start ready; passive ejection stays), no retries
# (so no request copy is kept for a replay). Request ids, trace context and the forwarding
# headers have no switch and stay on. The default row is compared with this one.
EDGEWARD_UPSTREAM_EXTRA='retry_budget_percent = 0
retry_budget_min = 0
health = { mode = "off" }'
EDGEWARD_CONFIG_EXTRA='[metrics]
enabled = false'
source "$(dirname "${BASH_SOURCE[0]}")/edgeward.sh"
CAND_DESC="edgeward, minimal job-equivalent config (no metrics, probes or retries)"
