"""The process pool's fork server preloads modules and numba kernels (pipeline.preload)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipeline.preload import modules_for
from pipeline.registry import get_stage_class

REPO = Path(__file__).resolve().parents[2]


def test_preload_names_the_stage_modules_and_their_declared_lazy_imports():
    stages = [get_stage_class("dedup.minhash")(), get_stage_class("filter.length")()]
    mods = modules_for(stages)
    assert mods[0] == "__main__" and mods[-1] == "pipeline._forkserver_warm"
    for m in ("pipeline.executor", "dedup.minhash", "dedup.components", "polars", "pipeline.filters.basic"):
        assert m in mods
    assert len(mods) == len(set(mods))


def test_warming_loads_cached_kernels_without_compiling():
    """A fresh process that imports the warm module holds the cached kernels (loaded, not
    compiled: a kernel's first call compiles it and writes the cache, the next process loads it)."""
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from pipeline._wordcount import count_words\n"
        "import pipeline._forkserver_warm as w\n"
        "print(w.WARMED, len(count_words.overloads))\n" % str(REPO)
    )
    # first process: make sure the word counter's cache exists (compiles it once if missing)
    subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, %r)\n"
                    "from pipeline.tokens import word_count\nimport pyarrow as pa\n"
                    "word_count(pa.table({'text': ['a b c']}))" % str(REPO)], check=True, timeout=240)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240, check=True)
    warmed, overloads = map(int, r.stdout.split())
    assert warmed >= 1 and overloads >= 1, r.stdout
