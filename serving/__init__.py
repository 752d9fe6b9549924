"""AcousticSense online serving: the batch job's model bundle and features behind a Ray Serve HTTP API.

Two deployments mirror the batch job's two stages: ``ClassifierIngress`` (FastAPI; decode and
featurize on CPU threads) and ``GenreModel`` (the classifier, with ``@serve.batch`` dynamic batching
across requests). ``serving.app`` holds the application (``app``) and its builder (``build_app``);
importing this package alone does not import Ray.
"""

from __future__ import annotations

from serving.config import AppArgs

__all__ = ["AppArgs"]
