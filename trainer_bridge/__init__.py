"""The bundled trainer: ShardLoader, tokenizer, compact GPT, pretrain/distill/quantize/export/eval.

It reads snapshots through ``manifest.json`` and Parquet shards only and never imports the
pipeline. torch is imported lazily by the modules that need it, so ``assay --help`` stays fast.
"""
