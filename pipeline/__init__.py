"""assay's pipeline core: batches, stages, specs, plans, executors, readers and writers."""

__version__ = "0.1.0"
