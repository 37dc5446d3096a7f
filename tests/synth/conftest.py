"""Fixtures for synth tests: model folders (built once into the cache) and vllm presence.

Tests marked ``vllm`` run in ``.venv-vllm`` (``make venv-vllm``; ``make test`` runs them
there). Collected in an interpreter without vLLM they FAIL with that instruction: never a skip.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

for _k, _v in {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "OMP_NUM_THREADS": "1",
               "VLLM_CPU_OMP_THREADS_BIND": "nobind", "VLLM_CPU_KVCACHE_SPACE": "1"}.items():
    os.environ.setdefault(_k, _v)

EXAMPLES_SYNTH = Path(__file__).resolve().parents[2] / "examples" / "data" / "synth"


def pytest_runtest_setup(item):
    if item.get_closest_marker("vllm") is not None and importlib.util.find_spec("vllm") is None:
        pytest.fail("vLLM is not installed in this interpreter: vllm tests run in .venv-vllm (`make venv-vllm`, "
                    "then `.venv-vllm/bin/python -m pytest -m vllm tests/synth`; `make test` does both)", pytrace=False)


@pytest.fixture(scope="session")
def tiny_model() -> str:
    from synth.models import tiny_llama_folder

    return str(tiny_llama_folder())


@pytest.fixture(scope="session")
def smollm2() -> str:
    from synth.models import smollm2_folder

    return str(smollm2_folder())
