#!/usr/bin/env bash
# `make down`: stop what `make up` started (recorded under .run/) and nothing else. Trained models,
# MLflow runs and checkpoints stay in .run/ for the next `make up`.
set -uo pipefail

source "$(dirname "$0")/env.sh"

if [ -f "$RUN/ray.tmpdir" ]; then
  # Only the processes of the head make up started (its temp dir is in their command lines):
  # `ray stop` would stop every Ray cluster on this machine.
  echo "stopping the Ray cluster make up started (Serve apps and jobs with it)"
  "$VENV/bin/python" - "$(cat "$RUN/ray.tmpdir")" <<'PY'
import os, sys, psutil
tag = sys.argv[1]
roots = [
    p for p in psutil.process_iter(["cmdline"])
    if p.pid != os.getpid() and any(tag in part for part in p.info["cmdline"] or [])
]
# and their children: the raylet's agents rename themselves (ray::DashboardAgent, ray::RuntimeEnvAgent),
# so the temp dir is not in their command lines, and they outlive a killed raylet
procs = {p.pid: p for p in roots}
for root in roots:
    try:
        procs.update((c.pid, c) for c in root.children(recursive=True))
    except psutil.NoSuchProcess:
        pass
procs = list(procs.values())
for p in procs:
    try:
        p.terminate()
    except psutil.NoSuchProcess:
        pass
_, alive = psutil.wait_procs(procs, timeout=10)
for p in alive:
    p.kill()
PY
  rm -f "$RUN/ray.tmpdir" "$RUN/serve.deployed" "$RUN/serve.apps"
elif [ -f "$RUN/serve.deployed" ]; then
  for app in $(cat "$RUN/serve.apps" 2>/dev/null); do
    echo "deleting Serve app $app from the Ray cluster make up found running"
    serve delete "$app" --address "$RAY_API" --yes >/dev/null 2>&1 || true
  done
  rm -f "$RUN/serve.deployed" "$RUN/serve.apps"
fi

if [ -f "$RUN/mlflow.pid" ]; then
  pid=$(cat "$RUN/mlflow.pid")
  if kill -0 "$pid" 2>/dev/null; then
    echo "stopping MLflow (pid $pid)"
    pkill -TERM -P "$pid" 2>/dev/null || true  # its gunicorn/uvicorn workers
    kill "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN/mlflow.pid"
fi
echo "down"
