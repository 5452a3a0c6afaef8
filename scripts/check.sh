#!/usr/bin/env bash
# The quality gate: lint, format, type check and the layer rule (import-linter contracts in
# pyproject.toml), with zero findings. Run before every commit
# (pre-commit runs it for you after `pre-commit install`); .ci/run runs it before the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports --no-cache
