# One command each for a newcomer on a fresh machine:  make demo  |  make test
# PyTorch comes first, pinned: an unpinned `torch` may pull a multi-GB build from the network.
# torchvision (spandrel, the upscalers' loader, imports it) must be built for the same torch; the
# only torchvision wheels this project's machines hold on disk are built for torch 2.14.1, so that
# torch is the pin (it runs on CPUs; torchvision 0.28 cannot load next to the 2.13 CPU-only build).
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.14.1 torchvision==0.29.1
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
