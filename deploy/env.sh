# Sourced by deploy/up.sh, head.sh and down.sh: where `make up` keeps its state, its ports (each
# overridable from the environment) and two helpers. Not a command of its own.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN="${RUN:-$ROOT/.run}"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
MLFLOW_PORT="${MLFLOW_PORT:-5000}"
DASHBOARD_PORT="${RAY_DASHBOARD_PORT:-8265}"
SERVE_PORT="${SERVE_PORT:-8000}"
GCS_PORT="${RAY_GCS_PORT:-6379}"
MLFLOW_URI="http://127.0.0.1:$MLFLOW_PORT"
RAY_API="http://127.0.0.1:$DASHBOARD_PORT"
export RAY_AUTH_MODE=token  # Ray >= 2.59 enables token auth on local clusters; clients must opt in
# Serve's controller kills a proxy that is not ready within this many seconds (Ray's default 5), and
# `serve start` then fails on the killed proxy: a loaded 2-core machine starts one in more than 5 s.
export RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S="${RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S:-30}"
export PATH="$VENV/bin:$PATH"
START="${UP_START:-$(date +%s)}"

say() { printf '[up %4ss] %s\n' "$(( $(date +%s) - START ))" "$*"; }

wait_for() {  # wait_for <what> <seconds> <command...>
  local what="$1" limit="$2"; shift 2
  for _ in $(seq "$((limit * 2))"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  say "timed out waiting for $what"; return 1
}
