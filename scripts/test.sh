#!/usr/bin/env bash
# The test command: sets everything up on a fresh machine, then runs the whole suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k retriever, scripts/test.sh --run-slow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# Type check of the core package and the public namespaces (files: [tool.mypy] in pyproject.toml).
.venv/bin/python -m mypy
exec .venv/bin/python -m pytest "$@"
