#!/usr/bin/env bash
# The core suite (tests/mrl_keras) on the other Keras 3 backends, each in its own environment:
# .venv-jax (jax, jaxlib: CPU wheels) and .venv-torch (the CPU build of torch). Each holds only
# Keras, NumPy, pytest and the backend at the versions below; the repository is importable through
# pytest's `pythonpath = ["."]`, so TensorFlow is never installed there. The environments are
# reused when present (a stamp file records what was installed). Prints each leg's install and
# test time. Called by scripts/test.sh after the main suite; run it alone as
# `bash scripts/test_backends.sh [jax] [torch]`.
#
# PyTorch: the registry's default `torch` wheel pulls in gigabytes of CUDA libraries; only the
# `+cpu` build (a local wheel on this project's machines, found through pip's find-links) is
# installed. Where no such wheel is found the torch leg says so and is skipped, unless
# MRL_REQUIRE_ALL_BACKENDS=1, which makes that a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
BACKENDS="${*:-${MRL_BACKENDS:-jax torch}}"
JAX_VERSION="${MRL_JAX_VERSION:-0.10.2}"
TORCH_VERSION="${MRL_TORCH_VERSION:-2.13.0+cpu}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"

# The same Keras and NumPy as the main environment, so every backend runs the same Keras code.
versions() {
  if [ -x .venv/bin/python ]; then
    .venv/bin/python -c "import importlib.metadata as m; print(m.version('keras'), m.version('numpy'))"
  else
    echo "3.15.1 2.4.6"
  fi
}
read -r KERAS_VERSION NUMPY_VERSION < <(versions)

packages_for() {
  local common="keras==$KERAS_VERSION numpy==$NUMPY_VERSION pytest>=8 pytest-timeout>=2.3"
  case "$1" in
    jax) echo "$common jax==$JAX_VERSION jaxlib==$JAX_VERSION" ;;
    torch) echo "$common torch==$TORCH_VERSION" ;;
    *) echo "unknown backend $1 (expected jax or torch)" >&2; return 2 ;;
  esac
}

status=0
summary=""
all_start=$(date +%s)
for backend in $BACKENDS; do
  venv=".venv-$backend"
  packages=$(packages_for "$backend")
  stamp="$venv/.mrl-backend-installed"
  start=$(date +%s)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$packages" ]; then
    echo "[backends] $backend: creating $venv ($packages)"
    [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
    # shellcheck disable=SC2086
    if ! "$venv/bin/python" -m pip install -q --disable-pip-version-check $packages \
        2> >(grep -v "WARNING: Location" >&2); then
      if [ "$backend" = torch ] && [ "${MRL_REQUIRE_ALL_BACKENDS:-0}" != 1 ]; then
        echo "[backends] torch: no CPU wheel torch==$TORCH_VERSION could be installed" \
             "(the registry's default wheel pulls in CUDA libraries); torch leg SKIPPED"
        summary="$summary\n[backends] torch: skipped (no CPU wheel)"
        continue
      fi
      echo "[backends] $backend: install failed" >&2
      status=1
      continue
    fi
    echo "$packages" > "$stamp"
  fi
  installed=$(date +%s)
  echo "[backends] $backend: pytest tests/mrl_keras"
  rc=0
  KERAS_BACKEND="$backend" "$venv/bin/python" -m pytest tests/mrl_keras -q -p no:cacheprovider \
    || rc=$?
  done_at=$(date +%s)
  line="[backends] $backend: install $((installed - start)) s, tests $((done_at - installed)) s, exit $rc"
  echo "$line"
  summary="$summary\n$line"
  [ "$rc" = 0 ] || status=1
done
echo -e "${summary#\\n}"
echo "[backends] total $(( $(date +%s) - all_start )) s"
exit "$status"
