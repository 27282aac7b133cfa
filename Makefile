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
# The demo: the small CLIP we ship (trained here by `make shapes-model`: models/clipscore-shapes/TRAINING.md)
# on the synthetic shapes sample, so its scores mean something offline. Photos with a hub model:
#   make demo DEMO_MODEL=openai/clip-vit-base-patch32 DEMO_DATA=data/sample DEMO_SET= DEMO_BY=
DEMO_MODEL ?= models/clipscore-shapes
DEMO_DATA ?= data/shapes
DEMO_SET ?= --set band_edges=[0.2,0.4,0.6,0.8] --set write_embeddings=true --set signals=[image,caption,language,phash]
DEMO_BY ?= kind
DEMO_OUT ?= out/demo_scores
DEMO_REPORT ?= out/demo_report.html

export PYSPARK_PYTHON := $(PY)
export PYSPARK_DRIVER_PYTHON := $(PY)
export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test test-core check-report bench bench-host bench-families bench-peer bench-scale shapes-model clean-env print-venv

# Built once per requirements hash (the folder name), whatever the files' timestamps in a fresh clone.
$(STAMP):
	@command -v java >/dev/null || { echo "Spark needs Java 17+: install a JDK (e.g. apt-get install openjdk-17-jre-headless)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

setup: $(STAMP)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .

# A random-weight ViT-B/32 (the real architecture; no pretrained weights can be downloaded here), for
# the benchmarks: speed does not depend on the weights.
out/models/clip-vit-b-32-random: | setup
	if [ -d $(SHARED)/clip-vit-b-32-config ]; then \
	  $(PY) -m clipscore.devtools.random_model --config $(SHARED)/clip-vit-b-32-config --out $@; \
	else \
	  $(PY) -m clipscore.devtools.random_model --tiny --out $@; \
	fi

demo: setup $(if $(filter out/%,$(DEMO_MODEL)),$(DEMO_MODEL))
	$(VENV)/bin/clipscore score --input $(DEMO_DATA)/pairs.csv --output $(DEMO_OUT) --mode overwrite \
	  --model $(DEMO_MODEL) --set image_base_path=$(CURDIR)/$(DEMO_DATA) $(DEMO_SET) --master "local[2]"
	@echo "scored table: $(DEMO_OUT) (Delta, partitioned by score_band); rows per band by $(or $(DEMO_BY),band):"
	$(PY) -m clipscore.jobs.explore $(DEMO_OUT) $(if $(DEMO_BY),--by $(DEMO_BY))
	$(VENV)/bin/clipscore report --input $(DEMO_OUT) --output $(DEMO_REPORT) --figures out/demo_figures \
	  --image-base-path $(CURDIR)/$(DEMO_DATA) $(if $(DEMO_BY),--category-col $(DEMO_BY)) --sample 24 --master "local[2]"
	@echo "report: $(DEMO_REPORT) (figures as PNG in out/demo_figures)"

# The demo's report rendered in headless Chromium (Debian: apt-get install chromium): a screenshot in
# out/, and a failure if any image did not load.
check-report: demo
	$(PY) scripts/check_report.py $(DEMO_REPORT) --screenshot out/demo_report.png

# Rebuild the shipped model from its recipe (about 5 min on 2 cores): synthetic data, an untrained
# config, `clipscore train`. Writes out/train/clipscore-shapes; copy it over models/ to ship it.
shapes-model: setup
	$(PY) -m clipscore.devtools.recipe --out out/train/init
	[ -f out/train/shapes.parquet ] || $(PY) -m clipscore.devtools.synthetic table --out out/train/shapes.parquet --n 20000 --seed 1
	rm -rf out/train/clipscore-shapes out/train/clipscore-shapes.clipscore-train
	$(VENV)/bin/clipscore train --input out/train/shapes.parquet --init out/train/init \
	  --output out/train/clipscore-shapes --epochs 6 --batch-size 128 --lr 1e-3 --master "local[2]"

test: setup
	$(PY) -m pytest -q tests

# The Spark-free core alone (tests/core/; tests/spark/ is marked `spark` by tests/conftest.py): a few minutes.
test-core: setup
	$(PY) -m pytest -q -m "not spark" tests

bench: setup
	$(PY) benchmarks/bench.py

# d0 alone: the Spark job's host cost per pair by process kind, tiny model, 1,280 pairs (about 6 min on 2 cores)
bench-host: setup
	$(PY) benchmarks/bench.py --only d0

# bf16 on a CPU per family (CLIP, SigLIP, open_clip at ViT-B/32's size): fp32, autocast and cast (about 5 min)
bench-families: setup
	$(PY) benchmarks/families.py

# clipscore against clip-retrieval (the peer) on the same WebDataset shards, the same open_clip ViT-B/32
# weights file, batch size, device and cores (about 15-20 min on 2 cores); see benchmarks/README.md. The peer
# lives in its own virtual environment, built once per benchmarks/peer-requirements.txt hash, like ours.
PEER_HASH := $(shell cat benchmarks/peer-requirements.txt | sha256sum | cut -c1-12)
PEER_VENV ?= $(HOME)/.cache/clipscore/peer-venv-$(PEER_HASH)
PEER_STAMP := $(PEER_VENV)/.clipscore-peer-installed
PEER_ARGS ?=

$(PEER_STAMP):
	$(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEER_VENV)/bin/python -m pip install --quiet -r benchmarks/peer-requirements.txt
	touch $(PEER_STAMP)

bench-peer: setup $(PEER_STAMP)
	$(PY) benchmarks/peer.py --peer-venv $(PEER_VENV) $(PEER_ARGS)

# score and merge at 2,000 / 20,000 / 100,000 rows, tiny model (about 15 min on 2 cores); see benchmarks/scale.py
bench-scale: setup
	$(PY) benchmarks/scale.py

print-venv:
	@echo $(VENV)

clean-env:
	rm -rf $(VENV)
