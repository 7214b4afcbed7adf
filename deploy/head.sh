#!/usr/bin/env bash
# The head of `make up`: an MLflow server and a Ray head (dashboard, Jobs API, Serve's HTTP proxy),
# started at the same time, each recorded under $RUN so that `make down` stops exactly them. A second
# run reuses what is already answering.
#
# Loopback by default: the single-machine head runs in Ray's local-only mode
# (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, node address 127.0.0.1), so no Ray socket (GCS, raylet, workers,
# agents, client server) listens beyond loopback; MLflow, the dashboard and Serve bind 127.0.0.1.
# For a real multi-node cluster, set RAY_NODE_IP to this machine's address on the cluster network:
# the head then listens there and other machines join with `ray start --address $RAY_NODE_IP:6379`.
set -euo pipefail

source "$(dirname "$0")/env.sh"
# Ray's socket paths live under its temp dir and must stay short: one per checkout, under /tmp.
RAY_TMP="${RAY_TMP:-/tmp/attention-suite-$(printf '%s' "$RUN" | md5sum | cut -c1-10)}"
mkdir -p "$RUN"

mlflow_started=""
if curl -sf "$MLFLOW_URI/health" >/dev/null 2>&1; then
  say "MLflow already answering at $MLFLOW_URI: reusing it"
else
  say "starting MLflow at $MLFLOW_URI (sqlite store and artifacts in $RUN)"
  nohup "$VENV/bin/mlflow" server \
    --backend-store-uri "sqlite:///$RUN/mlflow.db" \
    --artifacts-destination "$RUN/mlartifacts" \
    --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 1 >"$RUN/mlflow.log" 2>&1 &
  echo $! >"$RUN/mlflow.pid"
  mlflow_started=1
fi

if curl -sf -o /dev/null "$RAY_API" 2>/dev/null; then
  if [ ! -f "$RUN/ray.tmpdir" ]; then
    say "port $DASHBOARD_PORT answers, but not for a Ray head make up started (no $RUN/ray.tmpdir):"
    say "stop that cluster, or choose other ports (RAY_DASHBOARD_PORT, RAY_GCS_PORT, SERVE_PORT, RAY_AGENT_PORT)"
    exit 1
  fi
  say "the Ray head make up started is answering at $RAY_API: reusing it"
else
  if [ -n "${RAY_NODE_IP:-}" ]; then
    say "starting a Ray head on $RAY_NODE_IP (multi-node: other machines join with ray start --address $RAY_NODE_IP:$GCS_PORT)"
    network=(--node-ip-address "$RAY_NODE_IP")
  else
    say "starting a local Ray head on loopback (dashboard $RAY_API)"
    export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
    network=()
  fi
  # Its workers ask this head's State API and no other: Ray Train's placement-group cleaner otherwise
  # asks the cluster it auto-detects, and another cluster on the machine, not knowing the training's
  # controller, gets its placement groups removed (seen with two heads on one machine).
  export RAY_API_SERVER_ADDRESS="$RAY_API"
  ray start --head "${network[@]}" --temp-dir "$RAY_TMP" --port "$GCS_PORT" --num-cpus "${RAY_NUM_CPUS:-2}" \
    --include-dashboard true --dashboard-host 127.0.0.1 --dashboard-port "$DASHBOARD_PORT" \
    --dashboard-agent-listen-port "${RAY_AGENT_PORT:-52365}" --ray-client-server-port "${RAY_CLIENT_PORT:-10001}" \
    ${RAY_METRICS_PORT:+--metrics-export-port "$RAY_METRICS_PORT"} \
    --disable-usage-stats >"$RUN/ray-start.log" 2>&1 || { say "ray start failed: see $RUN/ray-start.log"; exit 1; }
  echo "$RAY_TMP" >"$RUN/ray.tmpdir"
  wait_for "the Ray dashboard" 60 curl -sf -o /dev/null "$RAY_API"
  serve start --address "${RAY_NODE_IP:-127.0.0.1}:$GCS_PORT" --http-host 127.0.0.1 --http-port "$SERVE_PORT" >"$RUN/serve-start.log" 2>&1
  wait_for "Serve's HTTP proxy" 60 curl -s -o /dev/null "http://127.0.0.1:$SERVE_PORT/-/routes"
fi

if [ -n "$mlflow_started" ]; then
  wait_for "MLflow" 90 curl -sf "$MLFLOW_URI/health"
fi
say "MLflow and Ray are up"
