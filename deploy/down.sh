#!/usr/bin/env bash
# `make down`: stop what `make up` started (recorded under .run/) and nothing else. Trained models,
# MLflow runs and checkpoints stay in .run/ for the next `make up`.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RUN="$ROOT/.run"
VENV="$ROOT/.venv"
export PATH="$VENV/bin:$PATH"
export RAY_AUTH_MODE=token
RAY_API="http://127.0.0.1:${RAY_DASHBOARD_PORT:-8265}"

if [ -f "$RUN/ray.started" ]; then
  echo "stopping the Ray cluster make up started (Serve apps and jobs with it)"
  ray stop >/dev/null 2>&1 || true
  rm -f "$RUN/ray.started" "$RUN/serve.deployed" "$RUN/serve.apps"
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
