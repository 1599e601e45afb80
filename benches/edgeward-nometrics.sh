# Variant of benches/edgeward.sh with request metrics off (`metrics.enabled = false`), to
# measure what metrics cost on the whole path.
EDGEWARD_CONFIG_EXTRA='[metrics]
enabled = false'
source "$(dirname "${BASH_SOURCE[0]}")/edgeward.sh"
CAND_DESC="edgeward, shipped defaults with request metrics off"
