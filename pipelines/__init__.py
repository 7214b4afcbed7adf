"""Ray Train pipelines, one module per domain; shared parts in ``pipelines.common``."""
