# nginx exactly as the harness's own candidate (../shared/bench/candidates/nginx.sh) runs it,
# but logging every request to a file with `access_log ... buffer=64k`: the reference for what
# an access log costs (benches/edgeward-accesslog.sh is edgeward's side).
# shellcheck source=/dev/null
source "$BENCH_DIR/candidates/nginx.sh"
eval "$(declare -f cand_start | sed -e '1s/cand_start/_nginx_cand_start/' \
  -e 's|access_log off;|access_log $W/access.log combined buffer=64k;|')"
cand_start() {
  _nginx_cand_start
}
CAND_DESC="nginx, worker_processes 1, access_log combined buffer=64k"
