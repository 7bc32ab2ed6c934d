# One command each for a newcomer on a fresh machine:  make demo  |  make test
# PyTorch comes first from a pinned CPU build: an unpinned `torch` pulls a multi-GB CUDA build.
# torchvision (needed by spandrel, the upscalers' loader) is pinned with it: its latest release would
# pull a newer torch, CUDA build and all.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0 torchvision==0.28.0
BIN := $(VENV)/bin

.PHONY: setup demo test fuzz lint clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/framereel make examples/demo.json -o out/demo --model demo --fps 8
	@echo "open out/demo/video.mp4"

test: setup
	$(BIN)/python -m pytest -q

# The fuzz and fault suites at 20x the default run's size, with fresh random inputs each time (~10-30 min).
fuzz: setup
	FRAMEREEL_FUZZ=20 $(BIN)/python -m pytest -q tests/test_fuzz.py tests/test_faults.py

lint: setup
	$(BIN)/ruff check framereel tests benchmarks

clean:
	rm -rf $(VENV) out
