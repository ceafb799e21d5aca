#!/usr/bin/env bash
# The test command: sets everything up on a fresh machine, then runs the whole suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k retriever, scripts/test.sh --run-slow);
# without any, the core suite also runs on the JAX and PyTorch backends (scripts/test_backends.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# Type check of the core package and the public namespaces (files: [tool.mypy] in pyproject.toml).
.venv/bin/python -m mypy
# Extra arguments (or MRL_SKIP_BACKENDS=1): the main suite only.
if [ "$#" -gt 0 ] || [ "${MRL_SKIP_BACKENDS:-0}" = 1 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
rc=0
.venv/bin/python -m pytest || rc=$?
# The core suite (tests/mrl_keras) again on the JAX and PyTorch backends, each in its own
# environment (.venv-jax, .venv-torch; reused when present); prints each leg's time.
bash scripts/test_backends.sh || rc=$?
exit "$rc"
