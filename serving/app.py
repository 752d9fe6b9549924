"""The Serve application: ``app`` (the default bundle, musicnn-msd-mtt) and its builder ``build_app``.

Examples::

    serve run serving.app:app                                   # locally, port 8000, the default bundle
    serve run serving.app:build_app bundle_uri=musicnn-msd max_body_mb=20   # Serve passes these to build_app
    serve deploy infra/serve/config.yaml                        # args and per-deployment autoscaling from a file

Serve's HTTP proxy listens on 127.0.0.1 unless ``http_options.host`` says otherwise (infra/serve/config.yaml:
127.0.0.1; the KubeRay RayService: 0.0.0.0, behind a Kubernetes Service); the service has no authentication
of its own, so exposing it is a decision for whoever sets that host.
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application
from ray.serve.config import BackpressureConfig

from serving.config import load_service_bundle, parse_args
from serving.ingress import ClassifierIngress
from serving.model import GenreModel

__all__ = ["app", "build_app"]


def build_app(args: dict[str, Any]) -> Application:
    """Bind the two deployments: ``ClassifierIngress`` (HTTP, featurization) -> ``GenreModel`` (batched inference).

    Args:
        args: :class:`serving.config.AppArgs` fields (Serve's ``args:`` block, or ``key=value`` on
            ``serve run``). ``ingress_options`` / ``model_options`` are extra Serve deployment options
            (e.g. ``{"ray_actor_options": {"num_gpus": 1}}``); a config file's ``deployments:`` entries
            override both them and the defaults in code.

    Raises:
        pydantic.ValidationError: an unknown or out-of-range argument.
        BundleError / ConfigError: the bundle cannot be loaded or the overrides do not fit it; checked
            here so that a bad deploy fails at once rather than in every replica.
    """
    options = parse_args(args)
    # Resolved once, here: a bad deploy fails at once, and every replica gets the same configs. Weights are
    # read by the model replicas only.
    bundle = load_service_bundle(options)
    payload = options.model_dump()
    model = GenreModel.options(**options.model_options).bind(bundle, payload)
    # The proxy's own 503 (ingress queue full) carries the same Retry-After as the ingress's (model queue full).
    ingress_options = {"backpressure_config": BackpressureConfig(retry_after_s=options.retry_after_s)}
    ingress_options.update(options.ingress_options)
    return ClassifierIngress.options(**ingress_options).bind(model, bundle, payload)


app = build_app({})
