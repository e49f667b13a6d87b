#!/usr/bin/env bash
# Your own log through the CLI: check it against the schema, then the whole pipeline.
# Run from anywhere: bash examples/own_log/run.sh [OUT_DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-own-log-output}"
mkdir -p "$out"
python "$here/make_log.py" "$out/log.csv"
synthrec data validate --data-uri "$out/log.csv" --schema-uri "$here/schema.yaml"
synthrec pipeline --config "$here/pipeline.yaml" --data-uri "$out/log.csv" \
  --schema-uri "$here/schema.yaml" --out-uri "$out/pipeline"
