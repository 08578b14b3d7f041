#!/usr/bin/env bash
# Set up .venv and run the main demo: examples/quickstart.py on the hdf5 backend.
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source=scripts/venv.sh
. scripts/venv.sh
dosna_venv_setup hdf5,progress
exec "$PY" examples/quickstart.py "$@"
