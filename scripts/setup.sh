#!/usr/bin/env bash
# Create .venv (if needed) and install predstore with its test and benchmark extras, pinned by
# requirements/constraints.txt. Sourced by scripts/test.sh and scripts/demo.sh; safe to re-run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PREDSTORE_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
STAMP="$VENV/.predstore-installed"
WANT="$(cat "$ROOT/pyproject.toml" "$ROOT/requirements/constraints.txt" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  # torch first and alone, pinned: a looser requirement would fetch a multi-GB CUDA build.
  "$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
  "$VENV/bin/python" -m pip install --quiet -c "$ROOT/requirements/constraints.txt" -e "$ROOT[dev,bench]"
  echo "$WANT" > "$STAMP"
fi
# The viewer's browser tests drive the system's Chromium (Debian's package); Playwright never
# downloads one. On a fresh machine (CI runs as root) install it when it is missing.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
export PATH="$VENV/bin:$PATH"
