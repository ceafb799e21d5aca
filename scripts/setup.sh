#!/usr/bin/env bash
# One-time setup on a fresh Debian machine: system packages and a virtual environment in .venv
# with mrl-keras installed (editable) and its dev extras (test, bench, text, beam, and plots,
# cjk, tfds: the optional features CI tests). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# Four small CJK font packages (~7 MB) for the many-class CJK builder's tests; the full
# benchmark installs the rest with scripts/setup_cjk.sh.
APT_PACKAGES="dataset-fashion-mnist fonts-arphic-gbsn00lp fonts-arphic-gkai00mp fonts-wqy-microhei fonts-droid-fallback ${MRL_EXTRA_APT_PACKAGES:-}"
. scripts/apt_install.sh
# shellcheck disable=SC2086 # one word a package
apt_install_missing setup $APT_PACKAGES

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import mrl_keras, tensorflow, scann, tensorflow_serving, faiss, pytest, apache_beam, matplotlib, fontTools, tensorflow_datasets" >/dev/null 2>&1 \
   || [ pyproject.toml -nt .venv/.mrl-installed ]; then
  echo "[setup] pip install -e '.[dev]' (TensorFlow, ScaNN, ... a few minutes the first time)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch .venv/.mrl-installed
fi
echo "[setup] ready: $(.venv/bin/mrl --version)"
