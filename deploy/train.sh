#!/usr/bin/env bash
# `make train [MODELS="name ..."]`: retrain zoo models as Ray jobs on the cluster `make up` started,
# each with the exact command of its model card (zoo/<name>/card.json), one after another, with the
# job's progress lines (and ETA) streamed here. A model that beats its champion is promoted, and the
# served app picks it up within 30 s (no redeploy). The cards' commands ask for one worker with one
# CPU, or train in the job's own driver (`--workers 0`, no Ray resources asked), which fits beside the
# served apps on a 2-CPU head; a job whose CPUs cannot be had fails within about 2 minutes, naming what
# it asked for and what is free.
set -euo pipefail

source "$(dirname "$0")/env.sh"
export MLFLOW_TRACKING_URI="$MLFLOW_URI" ATTENTION_SUITE_HOME="$RUN"
curl -sf -o /dev/null "$RAY_API" || { echo "no Ray head answers at $RAY_API: run make up first"; exit 1; }

names=("$@")
[ ${#names[@]} -gt 0 ] || mapfile -t names < <(ls "$ROOT/zoo")
for name in "${names[@]}"; do
  card="$ROOT/zoo/$name/card.json"
  [ -f "$card" ] || { say "no zoo model named $name (see zoo/)"; exit 1; }
  command=$("$PY" -c "import json, sys; print(json.load(open(sys.argv[1]))['command'])" "$card")
  say "training $name: $command"
  ray job submit --address "$RAY_API" \
    --runtime-env-json "{\"env_vars\": {\"MLFLOW_TRACKING_URI\": \"$MLFLOW_URI\", \"ATTENTION_SUITE_HOME\": \"$RUN\"}}" \
    -- bash -c "cd '$ROOT' && $command"
done
