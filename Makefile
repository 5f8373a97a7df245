# Every target installs what it needs first: `make test` on a fresh clone does everything.
PYTHON ?= python3
VENV ?= .venv
# The exact torch wheel; torch==2.13.0 is a CPU build on this machine's disk. Override for CUDA,
# e.g. make install TORCH_SPEC='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128'
TORCH_SPEC ?= torch==2.13.0
# The exact releases the tests passed with (torch apart: TORCH_SPEC, whose wheel may be a CUDA
# build). CONSTRAINTS= (empty) installs the newest releases pyproject.toml allows instead.
CONSTRAINTS ?= constraints.txt
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARGS ?=

.PHONY: install lock test test-all fuzz lint train predict samples clean

install: $(STAMP)

# torch first and unconstrained (a CUDA index may not hold the pinned builds of its
# dependencies); the next step brings those to the pinned releases.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e ".[dev,dashboard]"
	touch $(STAMP)

# constraints.txt from this venv, once `make test` passed in it: the private-API contract tests
# run again, then `pip freeze` (torch and this project left out) replaces the pinned releases;
# the file's comment lines stay. To move to newer releases, see the top of constraints.txt.
lock:
	$(PY) -m pytest -q tests/test_private_apis.py
	{ grep '^#' constraints.txt; $(PY) -m pip freeze --exclude-editable | grep -v '^torch=='; } \
		> constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt
	touch $(STAMP)

# The suite in TEST_WORKERS processes (pytest-xdist; each has its own Ray session): its sweeps
# wait on Ray and on the epoch delays of the ordering tests part of the time (measured on 2
# cores: 2 workers 690 s, 4 workers 776 s; one process took 841 s on a fresh clone; 2 workers,
# 609 tests, 601 s on 2026-12-03).
# worksteal: a worker that runs out of tests takes some of a busy one's, so the long sweeps
# do not queue behind each other. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
test: install
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal $(ARGS)

# Also the slow and gpu tests (gpu ones skip without a GPU).
test-all: install
	$(PY) -m pytest -m "" $(ARGS)

# The slow fault-injection cases (tests/test_faults.py: a sweep on a full tmpfs, ...).
fuzz: install
	$(PY) -m pytest -m slow tests/test_faults.py $(ARGS)

lint: install
	$(PY) -m ruff check sweep models data_pipeline training bench tools tests

train: install
	$(PY) -m sweep train $(ARGS)

predict: install
	$(PY) -m sweep predict $(ARGS)

samples: install
	$(PY) -m sweep samples $(ARGS)

clean:
	rm -rf runs .pytest_cache

# docs/SETTINGS.md: every setting with its description, generated from the code (a test checks
# the committed file against the generator).
.PHONY: settings-doc
settings-doc: install
	$(PY) -m sweep settings > docs/SETTINGS.md

# Sweeps (issue 3): `make sweep` runs experiments/$(EXP).yaml into runs/$(EXP)/; overrides go in
# ARGS, e.g. make sweep EXP=crack_unet ARGS="--search.trials=20 --fresh".
EXP ?= quickstart
RUN ?= runs/$(EXP)
.PHONY: sweep resume extend confirm dashboard dashboard-stop
sweep: install
	$(PY) -m sweep run experiments/$(EXP).yaml $(ARGS)

resume: install
	$(PY) -m sweep resume $(RUN)

# More trials for a sweep, same study and run dir: make extend RUN=runs/quickstart TRIALS=24
# (TRIALS: the new total); a changed space in ARGS, e.g. ARGS="--space.lr='{loguniform: [1.0e-5,
# 1.0e-3]}'" (docs/EXTEND.md).
extend: install
	$(PY) -m sweep extend $(RUN) --trials $(TRIALS) $(ARGS)

confirm: install
	$(PY) -m sweep confirm $(RUN) $(ARGS)

# A local Ray head with the dashboard (127.0.0.1, token auth) that later sweeps join.
dashboard: install
	$(PY) -m sweep dashboard start $(ARGS)

dashboard-stop: install
	$(PY) -m sweep dashboard stop

# Send a sweep to the `make dashboard` head as a Ray job (token auth: RAY_AUTH_MODE=token makes
# `ray job submit` send ~/.ray/auth_token). The repository is the job's working dir; results land
# in $(CURDIR)/runs/$(EXP)/ (and the experiment's `storage:`). For a remote cluster, see README.
DASHBOARD_URL ?= http://127.0.0.1:8265
.PHONY: submit
submit: install
	RAY_AUTH_MODE=token $(VENV)/bin/ray job submit --address $(DASHBOARD_URL) --working-dir . \
		-- $(CURDIR)/$(PY) -m sweep run experiments/$(EXP).yaml --runs-dir $(CURDIR)/runs $(ARGS)

# The compare-runs report: report.html, report.md and trials.csv into the (first) run directory.
# Several runs: make report RUN="runs/crack_unet runs/crack_segnet" (EXP/RUN defaults: above)
.PHONY: report
report: install
	$(PY) -m sweep report $(RUN) $(ARGS)

# Benchmarks (issue 6): every CPU one, full size; writes bench/results.json and regenerates
# docs/BENCHMARKS.md and the README's summary. `make bench ARGS=loop` runs one; `make bench-tiny`
# proves the code runs.
# `make bench ARGS="search-dev search"` replays searches on the committed bench/lc_tables/ (make lc-tables).
.PHONY: bench bench-tiny
bench: install
	$(PY) -m bench $(ARGS)

bench-tiny: install
	$(PY) -m bench --tiny $(ARGS)

# docs/BENCHMARKS.md and the README's summary block, generated from the committed results
# (bench/results.json, the GPU result files, bench/lc_tables/); tests/test_benchmarks_doc.py
# fails when they are stale.
.PHONY: docs
docs: install
	$(PY) -m bench docs

# The learning-curve tables of the search benchmarks (issue 21): ~1 h each on 2 idle cores,
# resumable (run it again after an interruption: finished runs are kept). Then commit
# bench/lc_tables/ and run `make bench ARGS="search-dev search"`. PROBLEMS: some of them;
# LC_ARGS: e.g. "--budget-s 1800".
PROBLEMS ?= unet_thin unet_crisp unet_crop
LC_ARGS ?=
.PHONY: lc-tables
lc-tables: install
	for problem in $(PROBLEMS); do $(PY) -m bench.lc_table --problem $$problem $(LC_ARGS) || exit 1; done

# Weights & Biases (issue 4): upload runs/$(EXP)/wandb/ and create its W&B sweep (needs an API
# key: `wandb login`); wandb-view browses the same runs in the terminal, no network needed.
.PHONY: wandb-sync wandb-view
wandb-sync: install
	$(PY) -m sweep wandb-sync $(RUN) $(ARGS)

wandb-view: install
	$(PY) -m sweep wandb-view $(RUN)
