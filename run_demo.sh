#!/usr/bin/env bash
# Set up .venv and run the main demo: examples/train_digits.py on the hdf5 backend
# (store scikit-learn's digits in dosna, train an MLP from streamed batches, save the
# model with its lineage, reload it). Arguments go to the example (see --help).
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source=scripts/venv.sh
. scripts/venv.sh
dosna_venv_setup examples
exec "$PY" examples/train_digits.py "$@"
