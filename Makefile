# clipscore: `make demo` and `make test` set everything up on a fresh machine.
#
# The heavy Python environment (torch is the CUDA build from PyPI, several GB) is built once into a
# cache folder keyed by requirements.txt, and reused by later runs and by CI on the same machine.
SHELL := /bin/bash
PYTHON ?= python3
REQ_HASH := $(shell cat requirements.txt | sha256sum | cut -c1-12)
VENV ?= $(HOME)/.cache/clipscore/venv-$(REQ_HASH)
PY := $(VENV)/bin/python
STAMP := $(VENV)/.clipscore-installed
SHARED ?= ../shared/models
DEMO_MODEL ?= out/models/clip-vit-b-32-random
DEMO_OUT ?= out/demo_scores

export PYSPARK_PYTHON := $(PY)
export PYSPARK_DRIVER_PYTHON := $(PY)
export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test bench bench-scale clean-env print-venv

# Built once per requirements hash (the folder name), whatever the files' timestamps in a fresh clone.
$(STAMP):
	@command -v java >/dev/null || { echo "Spark needs Java 17+: install a JDK (e.g. apt-get install openjdk-17-jre-headless)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

setup: $(STAMP)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .

# A random-weight ViT-B/32 (the real architecture; no pretrained weights can be downloaded here).
# With hub access, run `make demo DEMO_MODEL=openai/clip-vit-base-patch32` for meaningful scores.
out/models/clip-vit-b-32-random: | setup
	if [ -d $(SHARED)/clip-vit-b-32-config ]; then \
	  $(PY) -m clipscore.random_model --config $(SHARED)/clip-vit-b-32-config --out $@; \
	else \
	  $(PY) -m clipscore.random_model --tiny --out $@; \
	fi

demo: setup $(if $(filter out/%,$(DEMO_MODEL)),$(DEMO_MODEL))
	$(VENV)/bin/clipscore score --input data/sample/pairs.csv --output $(DEMO_OUT) --mode overwrite \
	  --model $(DEMO_MODEL) --set image_base_path=$(CURDIR)/data/sample --master "local[2]"
	@echo "scored table: $(DEMO_OUT) (Delta, partitioned by score_band)"; ls $(DEMO_OUT)

test: setup
	$(PY) -m pytest -q tests

bench: setup
	$(PY) benchmarks/bench.py

# score and merge at 2,000 / 20,000 / 100,000 rows, tiny model (about 15 min on 2 cores); see benchmarks/scale.py
bench-scale: setup
	$(PY) benchmarks/scale.py

print-venv:
	@echo $(VENV)

clean-env:
	rm -rf $(VENV)
