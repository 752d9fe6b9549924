# AcousticSense: `make demo`, `make test` and `make test-fast` work on a fresh machine (they install first).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_CORPUS := data/demo-corpus
DEMO_OUTPUT := out/demo-predictions

.PHONY: install demo test test-fast lint format train-demo stack-up stack-down stack-status bench clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# A small synthetic corpus (16 genres x 2 clips of 30 s, four formats) plus three broken files,
# classified by the default bundle (musicnn-msd-mtt) on a local Ray.
demo: install
	$(BIN)/python -m acousticsense.demo.corpus --output $(DEMO_CORPUS) --per-class 2 --seed 7 \
		--duration-s 30 --formats wav,flac,ogg,mp3
	mkdir -p $(DEMO_CORPUS)/_broken
	: > $(DEMO_CORPUS)/_broken/empty.wav
	printf 'this is not audio\n' > $(DEMO_CORPUS)/_broken/not-audio.mp3
	head -c 40000 "$$(ls $(DEMO_CORPUS)/Jazz/*.flac | head -n 1)" > $(DEMO_CORPUS)/_broken/truncated.flac
	$(BIN)/python -m pipelines.classify --input $(DEMO_CORPUS) --output $(DEMO_OUTPUT) --overwrite --no-progress
	@echo "Read the predictions with: $(BIN)/python -c \"import pyarrow.parquet as pq; print(pq.read_table('$(DEMO_OUTPUT)').to_pandas())\""

test: install
	$(BIN)/python -m pytest

# The inner loop: every test that starts no Ray and no Serve (those carry the `ray` marker); `make test` runs all.
test-fast: install
	$(BIN)/python -m pytest -m "not ray"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Regenerates the committed synthetic-tiny bundle (a few minutes on 2 cores).
train-demo: install
	$(BIN)/python -m acousticsense.demo.train --output acousticsense/bundles/synthetic-tiny

# Local stack: SeaweedFS (S3 on 127.0.0.1:8333) and a Ray head (dashboard :8265, metrics :8080).
stack-up: install
	bash infra/local/stack.sh up

stack-down:
	bash infra/local/stack.sh down

stack-status:
	bash infra/local/stack.sh status

# Side-by-side benchmarks (print figures; see BENCHMARKS.md). Not part of `make test`.
bench: install
	$(BIN)/python -m benchmarks.pipeline
	$(BIN)/python -m benchmarks.inference

clean:
	rm -rf data out .pytest_cache .ruff_cache
