# Variant of benches/edgeward.sh: the /api route carries a per-client rate limit that the
# benchmark never reaches, to measure what checking a limit costs on the whole path.
EDGEWARD_ROUTE_EXTRA='rate_limits = ["per_ip"]'
EDGEWARD_CONFIG_EXTRA='[rate_limits.per_ip]
rate = "1000000/s"'
source "$(dirname "${BASH_SOURCE[0]}")/edgeward.sh"
CAND_DESC="edgeward, shipped defaults + a per-client rate limit never hit"
