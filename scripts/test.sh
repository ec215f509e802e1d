#!/usr/bin/env bash
# The whole check, as CI runs it: install, lint, format check, type check, every test.
# Extra arguments go to pytest (for example: bash scripts/test.sh -k store).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
ruff check src tests benchmarks examples
ruff format --check src tests benchmarks examples
mypy
python -m pytest -n 2 -m "not slow" "$@"
