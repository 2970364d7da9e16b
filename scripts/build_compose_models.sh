#!/usr/bin/env bash
# Build the model the compose stack's TF Serving serves (TF Serving's own test data is not in
# the tensorflow/serving image): deploy/tf-serving/models/half_plus_two/<version>/saved_model.pb,
# built with TensorFlow from the dev environment by tests/support/saved_model.py.
#   scripts/build_compose_models.sh          # version 1
#   scripts/build_compose_models.sh 1 2      # versions 1 and 2 (TF Serving serves the latest)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${MLINFRA_VENV:-$ROOT/.venv}/bin/python"
versions=("${@:-1}")
cd "$ROOT"
"$PY" - "${versions[@]}" <<'PY'
import sys
from tests.support.saved_model import build_half_plus_two
base = build_half_plus_two("deploy/tf-serving/models/half_plus_two", versions=[int(v) for v in sys.argv[1:]])
print(f"built {base} (versions {' '.join(sys.argv[1:])})")
PY
