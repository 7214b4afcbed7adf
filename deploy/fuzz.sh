#!/usr/bin/env bash
# Property-based fuzzing of each app's OpenAPI with schemathesis (valid and invalid data, seeded):
# no 5xx, only documented statuses, responses that match their schemas, invalid data refused.
#
#   deploy/fuzz.sh [BASE_URL] [PREFIX ...]     e.g. deploy/fuzz.sh http://127.0.0.1:8000 /pointer
#
# `make fuzz` runs it against `make up`'s apps with minutes per app; the test suite runs it with a small
# budget against the test cluster. FUZZ_EXAMPLES (examples per operation, default 200), FUZZ_SEED
# (default 1) and FUZZ_MAX_TIME (seconds per app, default 300) set the budget; FUZZ_ARGS adds schemathesis
# options (e.g. --exclude-path /delaunay for a deployment that serves no Delaunay model).
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ST="${ST:-$ROOT/.venv/bin/st}"
BASE="${1:-http://127.0.0.1:8000}"
shift || true
PREFIXES=("$@")
[ ${#PREFIXES[@]} -gt 0 ] || PREFIXES=(/pointer /recommend /vision /genomics)
CHECKS=not_a_server_error,status_code_conformance,response_schema_conformance,negative_data_rejection

status=0
for prefix in "${PREFIXES[@]}"; do
  echo "== fuzzing $BASE$prefix (examples ${FUZZ_EXAMPLES:-200}, seed ${FUZZ_SEED:-1}, at most ${FUZZ_MAX_TIME:-300} s)"
  "$ST" run "$BASE$prefix/openapi.json" --url "$BASE$prefix" \
    --checks "$CHECKS" --mode all \
    --max-examples "${FUZZ_EXAMPLES:-200}" --seed "${FUZZ_SEED:-1}" --max-time "${FUZZ_MAX_TIME:-300}" \
    --request-timeout 60 --workers 2 --no-color --warnings off ${FUZZ_ARGS:-} || status=1
done
exit $status
