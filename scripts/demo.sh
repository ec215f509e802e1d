#!/usr/bin/env bash
# The main job: install, then predict with Lightning into a store and analyse it.
# Extra arguments go to examples/demo.py (for example: bash scripts/demo.sh --samples 100000).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
python examples/demo.py "$@"
predstore info demo-store
