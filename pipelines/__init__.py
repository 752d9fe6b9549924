"""Ray Data jobs over the core library: orchestration only (``python -m pipelines.classify``)."""
