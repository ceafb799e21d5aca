#!/usr/bin/env bash
# The README's first command: set up this machine (system packages, .venv) and run `mrl demo`.
#
#   bash scripts/demo.sh            # the main job, about 5 minutes on 2 CPU cores
#   bash scripts/demo.sh --quick    # CI-sized
#   bash scripts/demo.sh --full     # the reproduction of the paper's experiments (see docs/REPRODUCTION.md)
#
# Every argument goes to `mrl demo` (see `mrl demo --help`). Exits with mrl demo's status.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/mrl demo "$@"
