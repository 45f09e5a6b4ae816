#!/usr/bin/env bash
# The test suite behind `make test` (run it through make, which prepares .venv first).
#  1. repository checks, once: notebooks committed without outputs, chapter code in sync
#     with kmt/, the GPU workflow file valid;
#  2. the kmt unit tests, once per Keras backend (TensorFlow, JAX, PyTorch), one process each;
#  3. every chapter under nbval at the smoke size;
#  4. the site, built at the smoke size with Sphinx warnings as errors.
set -euo pipefail
cd "$(dirname "$0")/.."
export KMT_SIZE=smoke
export PYTHONHASHSEED=0
export TF_CPP_MIN_LOG_LEVEL=2
started=$SECONDS
step() { printf '\n==== %s (%ds elapsed)\n' "$1" $((SECONDS - started)); }

step "repository checks"
KERAS_BACKEND=tensorflow python -m pytest -q -p no:cacheprovider tests/repo

for backend in tensorflow jax torch; do
  step "unit tests on the $backend backend"
  KERAS_BACKEND=$backend python -m pytest -q -p no:cacheprovider tests/unit
done

step "chapters under nbval (KMT_SIZE=smoke)"
KERAS_BACKEND=tensorflow python -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env \
  --nbval-cell-timeout=900 book

step "strict site build (KMT_SIZE=smoke)"
KERAS_BACKEND=tensorflow jupyter-book build book --config _config.yml --toc _toc.yml \
  --path-output _build/smoke -W -n --keep-going -q

step "done"
echo "All test steps passed in $((SECONDS - started)) s."
