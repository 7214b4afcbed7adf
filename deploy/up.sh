#!/usr/bin/env bash
# `make up`: MLflow + a local Ray head (deploy/head.sh) + the zoo's models registered into MLflow +
# every Serve app + one sample request per app, then the URLs; nothing trains on the way up (`make
# train` retrains the zoo's models as Ray jobs on this cluster). A second run reuses what is running.
# Everything started here is recorded under .run/ so that `make down` stops exactly that.
set -euo pipefail

source "$(dirname "$0")/env.sh"
mkdir -p "$RUN"
export ATTENTION_SUITE_HOME="$RUN"
export MLFLOW_TRACKING_URI="$MLFLOW_URI"

# --- MLflow and the Ray head, started together, on loopback (deploy/head.sh) ---
UP_START=$START RUN="$RUN" "$ROOT/deploy/head.sh"

# --- the zoo: the suite's trained models, registered into MLflow (champion where none is set) ---
say "registering the zoo's models (zoo/) into MLflow"
"$PY" -m pipelines.zoo register >"$RUN/zoo-register.log" 2>&1 \
  || { say "zoo registration failed: see $RUN/zoo-register.log"; exit 1; }
grep -E '^[a-z0-9-]+ v[0-9]+ \(' "$RUN/zoo-register.log" | while read -r line; do say "zoo: $line"; done || true

# --- every model the apps serve must have a champion now: nothing trains on the way up ---
"$PY" - "$ROOT/deploy/serve.yaml" <<'PY' || exit 1
import sys, yaml
from modelstore.registry import has_champion

def names(models):
    for value in (models or {}).values():
        yield from (names(value) if isinstance(value, dict) else [value] if value else [])

config = yaml.safe_load(open(sys.argv[1]))
missing = sorted({n for app in config["applications"] for n in names(app["args"].get("models"))})
missing = [n for n in missing if not has_champion(n)]
if missing:
    sys.exit(f"no champion for {', '.join(missing)}: add it to the zoo (python -m pipelines.zoo export) or train it "
             "(python -m pipelines.<domain> train --preset ...) before make up")
PY

# --- serve every app ---
say "deploying deploy/serve.yaml"
# The config names the default ports; a make up on other ports (MLFLOW_PORT, SERVE_PORT) deploys a copy.
sed -e "s|http://127.0.0.1:5000|$MLFLOW_URI|g" -e "s|^  port: 8000$|  port: $SERVE_PORT|" \
  "$ROOT/deploy/serve.yaml" >"$RUN/serve.yaml"
serve deploy "$RUN/serve.yaml" --address "$RAY_API" >"$RUN/serve-deploy.log" 2>&1
touch "$RUN/serve.deployed"
APPS=$("$PY" -c "import yaml; print(' '.join(a['name'] for a in yaml.safe_load(open('$ROOT/deploy/serve.yaml'))['applications']))")
echo "$APPS" >"$RUN/serve.apps"
running() {
  local status
  status=$(serve status --address "$RAY_API" 2>/dev/null) || return 1
  for app in $APPS; do
    echo "$status" | "$PY" -c "import sys, yaml; s = yaml.safe_load(sys.stdin); sys.exit(0 if s['applications']['$app']['status'] == 'RUNNING' else 1)" || return 1
  done
}
wait_for "every Serve app to be RUNNING" 300 running

# --- one sample request per app ---
BASE="http://127.0.0.1:$SERVE_PORT"
sample=$("$PY" -c "import json, random; random.seed(0); print(json.dumps({'points': [[random.random(), random.random()] for _ in range(20)]}))")
ranked='{"features": {"f0": "1", "f1": "2", "f2": "3", "f3": "4", "f4": "5", "f5": "6", "f6": "7", "f7": "8"}, "candidates": [{"d0": 0.1, "d1": 0.2}, {"d0": -1, "d1": 1}]}'
for request in "/pointer/tsp|$sample" "/pointer/convex-hull|$sample" "/pointer/delaunay|$sample" \
               '/recommend/next|{"history": ["1", "2", "3"], "k": 5}' "/recommend/rank|$ranked"; do
  path="${request%%|*}"; body="${request#*|}"
  code=$(curl -s -o "$RUN/sample.json" -w '%{http_code}' -H 'content-type: application/json' -d "$body" "$BASE$path")
  if [ "$code" != "200" ]; then say "sample request to $path failed ($code): $(cat "$RUN/sample.json")"; exit 1; fi
  say "POST $path -> 200 $(head -c 110 "$RUN/sample.json")..."
done
digit=$("$PY" -c "import base64, io; from PIL import Image; from sklearn.datasets import load_digits; b = io.BytesIO(); Image.fromarray((load_digits().images[0] * 15).astype('uint8')).resize((28, 28)).save(b, 'PNG'); print(base64.b64encode(b.getvalue()).decode())")
for model in van biformer agent; do
  code=$(curl -s -o "$RUN/sample.json" -w '%{http_code}' -H 'content-type: application/json' \
    -d "{\"image_base64\": \"$digit\", \"model\": \"$model\", \"top_k\": 3}" "$BASE/vision/classify")
  if [ "$code" != "200" ]; then say "sample request to /vision/classify ($model) failed ($code): $(cat "$RUN/sample.json")"; exit 1; fi
  say "POST /vision/classify ($model) -> 200 $(head -c 90 "$RUN/sample.json")..."
done

read -r splice alt <<<"$("$PY" -c "from services.genomics.sequences import read_uci_splice; from pipelines.genomics import SPLICE; s = read_uci_splice(SPLICE)[0].sequence; print(s, 'A' if s[30] != 'A' else 'C')")"
for request in "/genomics/classify|{\"sequences\": [\"$splice\"], \"task\": \"splice\"}" \
               "/genomics/tag|{\"sequence\": \"${splice}${splice}\", \"task\": \"coding\"}" \
               "/genomics/variant-effect|{\"sequence\": \"$splice\", \"variants\": [{\"position\": 30, \"alt\": \"$alt\"}]}"; do
  path="${request%%|*}"; body="${request#*|}"
  code=$(curl -s -o "$RUN/sample.json" -w '%{http_code}' -H 'content-type: application/json' -d "$body" "$BASE$path")
  if [ "$code" != "200" ]; then say "sample request to $path failed ($code): $(cat "$RUN/sample.json")"; exit 1; fi
  say "POST $path -> $code $(head -c 110 "$RUN/sample.json")..."
done

say "everything is up"
cat <<EOF

  Studio (a page per app)  $BASE/studio/   (pointer, vision, genomics, recommend)
  Pointer solver API docs  $BASE/pointer/docs
  Recommendation API docs  $BASE/recommend/docs
  Vision API docs          $BASE/vision/docs
  Genomics API docs        $BASE/genomics/docs
  Ray dashboard            $RAY_API   (token: ~/.ray/auth_token)
  MLflow UI                $MLFLOW_URI

  Submit a training job:   RAY_AUTH_MODE=token ray job submit --address $RAY_API -- python -m pipelines.pointer train --preset am-tsp20
  Stop everything:         make down
EOF
