"""Perplexity scorer: a tiny LM trained here on good text separates good from bad."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from classifiers.metrics import roc_auc
from classifiers.perplexity import PerplexityLM, PerplexityScorer
from pipeline import registry
from pipeline.stage import StageContext


@pytest.fixture(scope="module")
def lm(tiny_lm) -> PerplexityLM:
    return PerplexityLM(tiny_lm)


def test_trained_folder_and_metadata(tiny_lm):
    meta = json.loads((tiny_lm / "assay_lm.json").read_text())
    assert meta["steps_done"] == 400
    assert (tiny_lm / "model.safetensors").exists() and (tiny_lm / "tokenizer.json").exists()
    # 400 steps already beat a uniform guess over the 1k vocabulary by a wide margin
    assert meta["val_perplexity"] < 0.5 * meta["model"]["vocab_size"]


def test_good_text_has_lower_perplexity(lm, quality_split):
    _, held = quality_split
    idx = np.arange(0, len(held), 3)  # ~300 held-out docs keeps this test short
    sub = held.subset(idx)
    ppl = lm.perplexity(sub.texts, max_tokens=256)
    y = sub.binary("1")
    assert np.isfinite(ppl).all()
    assert np.median(ppl[y == 1]) < np.median(ppl[y == 0])
    assert roc_auc(y, -np.log(ppl)) >= 0.8


def test_batching_and_padding_do_not_change_scores(lm, quality_split):
    texts = quality_split[1].texts[:12]
    a = lm.perplexity(texts, max_tokens=200, tokens_per_batch=8192)
    b = lm.perplexity(texts, max_tokens=200, tokens_per_batch=64)  # one window per batch
    np.testing.assert_allclose(a, b, rtol=1e-4)


def test_max_tokens_bounds_work_and_empty_is_nan(lm, quality_split):
    text = quality_split[1].texts[0]
    # only the first max_tokens tokens count: appending text changes nothing
    a = lm.perplexity([text, text + " " + text * 5, "", "x"], max_tokens=32)
    assert a[0] == pytest.approx(a[1], rel=1e-5)
    assert np.isnan(a[2]) and np.isnan(a[3])


def test_stage_column(tiny_lm, heldout_table):
    assert registry._REGISTRY["classify.perplexity"] is PerplexityScorer
    assert "classifiers.perplexity" in registry.STAGE_MODULES
    stage = PerplexityScorer({"model_path": str(tiny_lm), "max_tokens": 64})
    t = heldout_table.slice(0, 40)
    out = stage.process(t, StageContext(stage.name))
    col = out.column("quality.perplexity")
    assert col.type == pa.float32() and out.num_rows == 40
    assert (col.to_numpy() > 1).all()


def test_missing_model_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="assay classifier train perplexity"):
        PerplexityLM(tmp_path)


@pytest.mark.slow
def test_hf_folder_model_scores_like_the_assay_lm(smollm2_dir, quality_split):
    """A local HF causal LM (SmolLM2-135M) loads through transformers and batches exactly."""
    hf = PerplexityLM(smollm2_dir)
    texts = quality_split[1].texts[:6]
    a = hf.perplexity(texts, max_tokens=96, tokens_per_batch=4096)
    b = hf.perplexity(texts, max_tokens=96, tokens_per_batch=96)
    assert np.isfinite(a).all() and (a > 1).all()
    np.testing.assert_allclose(a, b, rtol=1e-3)


def test_one_model_class_and_trainer_checkpoints_score_the_same(lm, tiny_lm, quality_split,
                                                               tmp_path):
    """The scorer's model is the trainer's GPT: a trainer checkpoint.pt holding the same weights
    scores the same; an old-format folder is refused with the fix in the message."""
    import torch

    from trainer_bridge.model import GPT

    assert isinstance(lm.model, GPT)
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": lm.model.state_dict(), "model_config": lm.model.cfg.to_dict(),
                "tokenizer": str(tiny_lm)}, run / "checkpoint.pt")
    texts = quality_split[1].texts[:5]
    np.testing.assert_allclose(PerplexityLM(run).perplexity(texts, max_tokens=100),
                               lm.perplexity(texts, max_tokens=100), rtol=1e-6)
    old = tmp_path / "old"
    old.mkdir()
    meta = json.loads((tiny_lm / "assay_lm.json").read_text())
    (old / "assay_lm.json").write_text(json.dumps({**meta, "format": "assay-tiny-gpt/1"}))
    with pytest.raises(ValueError, match="retrain"):
        PerplexityLM(old)
