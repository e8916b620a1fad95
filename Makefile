# Two commands: `make demo` (set up, run the main job) and `make test` (set up, run the tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,slurm,onnx]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/clnp run --benchmark split-digits --out runs/demo

test: $(VENV)/.installed
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/python -m mypy src/clnp
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
