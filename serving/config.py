"""The service's arguments (Serve's ``args:`` block) and the bundle they describe.

The arguments are a pydantic model, validated when the application is built, so a typo in
``infra/serve/config.yaml`` fails the deploy instead of a replica.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt

from acousticsense import ModelBundle, load_bundle

__all__ = ["AppArgs", "load_service_bundle", "parse_args"]


class AppArgs(BaseModel):
    """Arguments of :func:`serving.app.build_app`; every field has a default that runs on a laptop.

    The feature / postprocess overrides mean exactly what the batch job's flags of the same names
    mean (``python -m pipelines.classify --excerpt-s ...``): give both the same values and they
    compute the same predictions.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    bundle_uri: str | None = Field(
        default=None,
        description="a shipped bundle's name (musicnn-msd-mtt, musicnn-msd, musicnn-mtt, synthetic-tiny), or a "
        "bundle folder: a local path or s3://...; None is the default bundle (musicnn-msd-mtt)",
    )
    # repr=False: may hold credentials (key/secret), and an args object ends up in logs and error messages.
    storage_options: dict[str, Any] = Field(
        default_factory=dict, repr=False, description="fsspec options for bundle_uri, e.g. {'endpoint_url': ...}"
    )
    # HTTP limits
    max_body_mb: PositiveFloat = Field(default=50.0, description="largest request body, MiB (2**20 bytes)")
    max_files_per_request: PositiveInt = Field(default=32, description="files accepted by /v1/classify/batch")
    retry_after_s: PositiveInt = Field(default=1, description="Retry-After sent with 503 when the model queue is full")
    health_timeout_s: PositiveFloat = Field(default=2.0, description="how long /v1/health waits for a model replica")
    model_timeout_s: PositiveFloat = Field(
        default=60.0, description="longest wait for the model deployment's answer before a 503"
    )
    # featurization (ingress replicas)
    featurize_threads: PositiveInt = Field(default=2, description="concurrent featurizations per ingress replica")
    # inference (model replicas)
    max_batch_size: PositiveInt = Field(default=16, description="files per dynamic batch (@serve.batch)")
    batch_wait_timeout_s: float = Field(default=0.01, ge=0.0, description="longest wait to fill a batch")
    max_batch_windows: PositiveInt = Field(default=128, description="windows per forward pass")
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    precision: Literal["auto", "fp32", "fp16", "bf16", "int8"] = "auto"
    compile: bool = False
    torch_threads: PositiveInt = Field(default=1, description="intra-op threads of a model replica on CPU")
    # the batch job's overrides (None: the bundle's value)
    excerpt_s: PositiveFloat | None = None
    excerpt_policy: Literal["middle", "start"] | None = None
    segments: PositiveInt | None = None
    enhance: Literal["none", "denoise", "compress", "both"] | None = None
    rules: bool | None = None
    aggregation: Literal["mean", "vote"] | None = None
    top_k: PositiveInt | None = None
    review_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    # extra Serve deployment options applied in code (the config file's `deployments:` wins over these)
    ingress_options: dict[str, Any] = Field(default_factory=dict)
    model_options: dict[str, Any] = Field(default_factory=dict)

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 2**20)

    def overrides(self) -> dict[str, Any]:
        """The overrides in the batch job's shape (``JobOptions.overrides()``)."""
        return {
            "excerpt_s": self.excerpt_s,
            "excerpt_policy": self.excerpt_policy,
            "segments": self.segments,
            "enhance": self.enhance,
            "rules": self.rules,
            "aggregation": self.aggregation,
            "top_k": self.top_k,
            "review_threshold": self.review_threshold,
        }


def load_service_bundle(args: AppArgs) -> ModelBundle:
    """The bundle's configs (no weights) with the overrides applied exactly as the batch job does
    (``pipelines._stages.job_bundle``); ``ModelBundle.with_weights`` reads the weights where the model runs.

    Raises:
        BundleError: no readable bundle at ``args.bundle_uri``.
        ConfigError: an override is out of range for the bundle (e.g. excerpt shorter than its minimum).
    """
    return load_bundle(args.bundle_uri, args.storage_options, weights=False).with_overrides(**args.overrides())


def parse_args(args: dict[str, Any] | AppArgs | None) -> AppArgs:
    """Validate a Serve ``args`` dict (or pass an :class:`AppArgs` through)."""
    if isinstance(args, AppArgs):
        return args
    return AppArgs.model_validate(dict(args or {}))
