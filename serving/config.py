"""The service's arguments (Serve's ``args:`` block) and the bundle they describe.

The arguments are a pydantic model, validated when the application is built, so a typo in
``infra/serve/config.yaml`` fails the deploy instead of a replica.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, create_model

from acousticsense import OVERRIDES, Device, ModelBundle, Override, Precision, load_bundle

__all__ = ["AppArgs", "load_service_bundle", "parse_args"]

# extra="forbid": a typo in the Serve config fails the deploy; frozen: the replicas share one args object.
_CONFIG = ConfigDict(extra="forbid", frozen=True)


def _override_fields(overrides: Mapping[str, Override] = OVERRIDES) -> type[BaseModel]:
    """One optional field per declared override (``acousticsense.options.OVERRIDES``), ``None``: the bundle's value.

    Type, choices, bounds and description come from the declaration, so the service takes exactly the batch job's
    overrides (``python -m pipelines.classify --segments 3`` is ``segments: 3`` here) and refuses the same values.
    """
    fields: dict[str, Any] = {
        o.name: (o.annotation | None, Field(default=None, description=o.help, gt=o.spec.gt, ge=o.spec.ge, le=o.spec.le))
        for o in overrides.values()
    }
    return create_model("_Overrides", __config__=_CONFIG, __module__=__name__, **fields)


class AppArgs(_override_fields()):  # type: ignore[misc]  # a base built from the declaration
    """Arguments of :func:`serving.app.build_app`; every field has a default that runs on a laptop.

    Besides the fields below it has one field per per-run override of the bundle's config (``excerpt_s``,
    ``segments``, ``enhance``, ``rules``, …: ``acousticsense.options.OVERRIDES``), which mean exactly what the
    batch job's flags of the same names mean (``python -m pipelines.classify --excerpt-s ...``): give both the same
    values and they compute the same predictions.
    """

    model_config = _CONFIG

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
    device: Device = "auto"
    precision: Precision = "auto"
    compile: bool = False
    torch_threads: PositiveInt = Field(default=1, description="intra-op threads of a model replica on CPU")
    # extra Serve deployment options applied in code (the config file's `deployments:` wins over these)
    ingress_options: dict[str, Any] = Field(default_factory=dict)
    model_options: dict[str, Any] = Field(default_factory=dict)

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 2**20)

    def overrides(self) -> dict[str, Any]:
        """The overrides by name (``None``: the bundle's value), as the batch job's ``JobOptions.overrides()``."""
        return {name: getattr(self, name) for name in OVERRIDES}


def load_service_bundle(args: AppArgs) -> ModelBundle:
    """The bundle's configs (no weights) with the overrides applied, by the same ``load_bundle`` call as the batch
    job's driver; ``ModelBundle.with_weights`` reads the weights where the model runs.

    Raises:
        BundleError: no readable bundle at ``args.bundle_uri``.
        ConfigError: an override is out of range for the bundle (e.g. excerpt shorter than its minimum).
    """
    return load_bundle(args.bundle_uri, args.storage_options, weights=False, overrides=args.overrides())


def parse_args(args: dict[str, Any] | AppArgs | None) -> AppArgs:
    """Validate a Serve ``args`` dict (or pass an :class:`AppArgs` through)."""
    if isinstance(args, AppArgs):
        return args
    return AppArgs.model_validate(dict(args or {}))
