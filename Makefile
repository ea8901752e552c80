# Development entry points. Every target creates the virtual environment it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch and torchvision are pinned here (not in pyproject) so that pip takes the locally cached
# build; users install any torch >= 2.2.
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
DEMO_ARGS ?=

.PHONY: demo test lint typecheck docs docs-screenshots wheel clean

$(BIN)/.stamp-dev: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PIN)
	$(BIN)/python -m pip install -q -e ".[dev]"
	# xtcocotools is no dependency of visattn: tests/metrics/test_crowdpose.py uses it as an oracle for
	# CrowdPose AP and skips those tests without it. Its published wheels are built against numpy 1.x, so
	# build it against the installed numpy (one C extension, about 15 s).
	$(BIN)/python -m pip install -q cython setuptools wheel
	$(BIN)/python -m pip install -q --no-build-isolation --no-binary xtcocotools --force-reinstall --no-deps xtcocotools
	touch $@

demo: $(BIN)/.stamp-dev
	$(BIN)/python examples/demo.py $(DEMO_ARGS)

test: $(BIN)/.stamp-dev
	$(BIN)/ruff check src tests examples benchmarks docs/tools
	$(BIN)/ruff format --check src tests examples benchmarks docs/tools
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 --dist loadgroup

lint: $(BIN)/.stamp-dev
	$(BIN)/ruff check src tests examples benchmarks docs/tools
	$(BIN)/ruff format --check src tests examples benchmarks docs/tools

typecheck: $(BIN)/.stamp-dev
	$(BIN)/mypy

docs: $(BIN)/.stamp-dev
	$(BIN)/mkdocs build --strict

# Needs Debian's chromium (apt-get install chromium); PNGs of the main pages into docs_shots/.
docs-screenshots: docs
	$(BIN)/python docs/tools/screenshot.py site docs_shots

wheel: $(BIN)/.stamp-dev
	$(BIN)/python -m build

clean:
	rm -rf $(VENV) build dist site docs_shots .pytest_cache .mypy_cache .ruff_cache
