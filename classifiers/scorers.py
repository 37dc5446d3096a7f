"""Find the right scorer stage for a trained model path (used by ``assay classifier score``).

- ``*.bin`` (or any file fastText can read) → ``classify.fasttext``
- a folder with ``assay_lm.json`` → ``classify.perplexity``
- a file ``*.head.json`` (an embedding head) → ``classify.embedding``
"""

from __future__ import annotations

from pathlib import Path

from pipeline.stage import ScoreStage


def scorer_for_model(model_path: str | Path, name: str | None = None) -> ScoreStage:
    """A configured scorer stage for ``model_path``; ``name`` sets the ``quality.<name>`` column."""
    p = Path(model_path)
    if not p.exists():
        raise FileNotFoundError(f"model {p} does not exist")
    if p.is_dir():
        if (p / "assay_lm.json").exists() or (p / "config.json").exists():
            from classifiers.perplexity import PerplexityScorer

            return PerplexityScorer({"model_path": str(p), "name": name or "perplexity"})
        raise ValueError(f"{p} is a folder but holds neither assay_lm.json nor config.json")
    if p.name.endswith(".head.json"):
        from classifiers.embedding import EmbeddingScorer

        return EmbeddingScorer({"head_path": str(p), "name": name or "embedding"})
    from classifiers.fasttext_model import FastTextScorer

    return FastTextScorer({"model_path": str(p), "name": name or "fasttext"})
