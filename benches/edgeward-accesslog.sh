# Variant of benches/edgeward.sh that writes an access line per request to a file in the work
# dir, to compare with benches/nginx-accesslog.sh (nginx logging the same job through a
# 64 KiB buffer).
EDGEWARD_ACCESS_LOG=true
source "$(dirname "${BASH_SOURCE[0]}")/edgeward.sh"
CAND_DESC="edgeward, shipped defaults + access log to a file"
