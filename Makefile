# kmt: the two commands of the README, and a few helpers.
#   make book   build the site at the laptop size into _build/html
#   make test   unit tests on TensorFlow, JAX and PyTorch, every chapter under nbval, strict site build
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
BOOK_STAMP := $(VENV)/.book-installed
DEV_STAMP := $(VENV)/.dev-installed

.PHONY: book test test-notebooks install install-dev sync benchmarks student grade clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(BOOK_STAMP): requirements.txt requirements-export.txt pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-export.txt -e ".[faces]"
	touch $@

$(DEV_STAMP): requirements.txt requirements-export.txt requirements-dev.txt pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt -e ".[faces]"
	touch $(BOOK_STAMP) $@

install: $(BOOK_STAMP)
install-dev: $(DEV_STAMP)

# The published site is built at the laptop size; other sizes (KMT_SIZE=full on a GPU,
# KMT_SIZE=smoke) get their own folder and execution cache under _build/<size>.
KMT_SIZE ?= laptop
BOOK_OUT := $(if $(filter laptop,$(KMT_SIZE)),.,_build/$(KMT_SIZE))

book: $(BOOK_STAMP)
	KMT_SIZE=$(KMT_SIZE) $(VENV)/bin/jupyter-book build book --config "$(CURDIR)/_config.yml" --toc "$(CURDIR)/_toc.yml" \
		--path-output $(BOOK_OUT) -W -n --keep-going
	@echo "The site is in $(abspath $(BOOK_OUT))/_build/html (open index.html there in a browser)."

test: $(DEV_STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash tools/run_tests.sh

# Only the chapters under nbval, at KMT_SIZE (the GPU workflow runs this with KMT_SIZE=full).
test-notebooks: $(DEV_STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" KMT_SIZE=$(KMT_SIZE) bash tools/run_tests.sh notebooks

sync: $(BOOK_STAMP)
	$(PY) tools/sync_chapters.py

# The classroom kit (see book/instructors.md): the student edition of every chapter in
# _build/student/release and its autograder in _build/student/autograder.
student: $(BOOK_STAMP)
	$(PY) tools/student_edition.py --out _build/student

# Grade completed notebooks: make grade SUBMISSIONS="submissions/*/01_coordinates_and_warping.ipynb"
grade: $(BOOK_STAMP)
	@test -n "$(SUBMISSIONS)" || { echo 'name the notebooks: make grade SUBMISSIONS="path/*.ipynb"'; exit 2; }
	$(PY) tools/autograde.py $(SUBMISSIONS) --jobs 2 --csv _build/student/grades.csv --feedback _build/student/feedback

# Every benchmark, each printing ratios measured side by side in one run (results in
# benchmarks/results/). OFFICIAL_DIR, a checkout of the official first-order-model kept outside
# this repository, adds the official PyTorch code to the animation and training-step tables;
# OFFICIAL_PYTHONPATH, a folder with the official demo's requirements that kmt's environment lacks
# (pip install --target DIR scikit-learn pandas tqdm ffmpeg-python), serves its demo.py only.
OFFICIAL_DIR ?=
OFFICIAL := $(if $(OFFICIAL_DIR),--official-dir $(abspath $(OFFICIAL_DIR)))
OFFICIAL_SCRIPT := $(if $(OFFICIAL_DIR),--official-script $(abspath ../shared/bench/official_fomm_bench.py))
benchmarks: $(DEV_STAMP)
	$(PY) benchmarks/warp.py
	$(PY) benchmarks/data.py --out benchmarks/results/data.md
	$(PY) benchmarks/animate.py $(OFFICIAL)
	$(PY) benchmarks/animate.py --config synthetic-faces-64 --size 64 --frames 32 --repeats 10 $(OFFICIAL)
	$(PY) benchmarks/animate_process.py --rounds 3 --phases $(OFFICIAL) $(if $(OFFICIAL_PYTHONPATH),--official-pythonpath $(OFFICIAL_PYTHONPATH))
	$(PY) benchmarks/train_step.py $(OFFICIAL) $(OFFICIAL_SCRIPT)
	$(PY) benchmarks/train_scale.py
	$(PY) benchmarks/ablations.py --size 64 --steps 40 --seeds 1 --pairs 128 --full-seeds 1

clean:
	rm -rf _build
