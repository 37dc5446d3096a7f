"""Model-based quality scoring: fastText, small-LM perplexity, embedding heads, toxicity.

Every scorer is a :class:`~pipeline.stage.ScoreStage` that only adds a ``quality.<name>``
column; ``filter.threshold`` then keeps or drops on that column (absolute values or
corpus-wide percentiles), so a threshold can be swept without re-scoring::

    assay classifier train fasttext --train labelled.jsonl --output quality.bin

    [[stages]]
    kind = "classify.fasttext"
    model_path = "quality.bin"

    [[stages]]
    kind = "filter.threshold"
    column = "quality.fasttext"
    min_percentile = 30          # keep the best 70 % of the whole input

Stages: ``classify.fasttext``, ``classify.perplexity``, ``classify.embedding``,
``classify.toxicity``, ``filter.toxicity``, ``filter.threshold``. Commands:
``assay classifier train {fasttext,perplexity,embedding}``, ``assay classifier score``,
``assay classifier annotate`` (the FineWeb-Edu recipe). Measured quality and speed:
``docs/benchmarks/classifiers.md``.

Heavy dependencies (fasttext, torch, transformers, the MiniLM weights, scikit-learn) are
imported inside the functions that need them: importing this package, its CLI and the stage
registry stays cheap.
"""
