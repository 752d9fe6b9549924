"""Model bundles: ``model.safetensors`` + ``bundle.json`` in a folder, local or any fsspec URI.

A bundle is all that batch and serving need: loading it rebuilds the feature extraction, the model
and the postprocessing exactly, so both compute identical predictions for identical bytes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from acousticsense.config import FeatureConfig, ModelConfig, PostprocessConfig, config_from_dict
from acousticsense.errors import BundleError, ConfigError
from acousticsense.model import WindowClassifier
from acousticsense.storage import filesystem, join_uri

__all__ = ["BUNDLE_FORMAT", "ModelBundle", "save_bundle", "write_bundle", "load_bundle", "default_bundle_uri"]

BUNDLE_FORMAT = 1
_WEIGHTS = "model.safetensors"
_MANIFEST = "bundle.json"


@dataclass(frozen=True)
class ModelBundle:
    """Everything a loaded bundle holds. ``state_dict`` maps parameter names to CPU tensors."""

    model: ModelConfig
    features: FeatureConfig
    postprocess: PostprocessConfig
    labels: tuple[str, ...]
    version: str
    preset: str = "custom"
    provenance: dict[str, Any] = field(default_factory=dict)
    state_dict: dict[str, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.labels) != self.model.n_classes:
            raise BundleError(f"bundle has {len(self.labels)} labels but the model has {self.model.n_classes} classes")
        if (self.model.n_mels, self.model.window_frames) != (
            self.features.n_mels,
            self.features.window_frames,
        ):
            raise BundleError("model input size does not match the feature config's n_mels x window_frames")

    @property
    def feature_hash(self) -> str:
        return self.features.feature_hash()

    def build_model(self) -> WindowClassifier:
        """A :class:`WindowClassifier` in eval mode with the bundle's weights, loaded strictly."""
        model = WindowClassifier(self.model)
        missing, unexpected = model.load_state_dict(self.state_dict, strict=False)
        if missing or unexpected:
            raise BundleError(f"weights do not fit the architecture: missing {missing}, unexpected {unexpected}")
        return model.eval()

    def with_postprocess(self, **changes: Any) -> ModelBundle:
        """A copy with some postprocessing fields replaced (e.g. ``temperature``, ``review_threshold``)."""
        return dataclasses.replace(self, postprocess=dataclasses.replace(self.postprocess, **changes))

    def with_overrides(self, **changes: Any) -> ModelBundle:
        """A copy with feature and postprocessing fields replaced by name; ``None`` values are ignored.

        Batch jobs and the service apply their options through this one method, so the same options
        always give the same features and predictions.

        Raises:
            ConfigError: a name that is neither a feature nor a postprocessing field, or a bad value.
        """
        given = {k: v for k, v in changes.items() if v is not None}
        feature_fields = {f.name for f in dataclasses.fields(FeatureConfig)}
        post_fields = {f.name for f in dataclasses.fields(PostprocessConfig)}
        unknown = sorted(set(given) - feature_fields - post_fields)
        if unknown:
            raise ConfigError(f"unknown option(s) {unknown}: not a feature or postprocessing field")
        bundle = self
        feature_changes = {k: v for k, v in given.items() if k in feature_fields}
        if feature_changes:
            bundle = dataclasses.replace(bundle, features=dataclasses.replace(bundle.features, **feature_changes))
        post_changes = {k: v for k, v in given.items() if k in post_fields}
        return bundle.with_postprocess(**post_changes) if post_changes else bundle

    def manifest(self) -> dict[str, Any]:
        """The JSON-serialisable description written to ``bundle.json``."""
        return {
            "format": BUNDLE_FORMAT,
            "version": self.version,
            "preset": self.preset,
            "labels": list(self.labels),
            "model": dataclasses.asdict(self.model),
            "features": dataclasses.asdict(self.features),
            "feature_hash": self.feature_hash,
            "postprocess": dataclasses.asdict(self.postprocess),
            "provenance": self.provenance,
        }


def default_bundle_uri() -> str:
    """Path of the demo bundle shipped inside the package (a demo model: see README)."""
    return str(resources.files("acousticsense.demo") / "bundle")


def save_bundle(
    uri: str,
    model: torch.nn.Module,
    *,
    features: FeatureConfig,
    labels: Sequence[str],
    version: str,
    preset: str = "custom",
    postprocess: PostprocessConfig | None = None,
    provenance: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> ModelBundle:
    """Write ``model``'s weights and configs as a bundle folder at ``uri``; returns the bundle."""
    if not isinstance(model, WindowClassifier):
        raise BundleError("only WindowClassifier models can be bundled")
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    bundle = ModelBundle(
        model=model.config,
        features=features,
        postprocess=postprocess or PostprocessConfig(),
        labels=tuple(labels),
        version=version,
        preset=preset,
        provenance=dict(provenance or {}),
        state_dict=state,
    )
    return write_bundle(uri, bundle, storage_options)


def write_bundle(uri: str, bundle: ModelBundle, storage_options: Mapping[str, Any] | None = None) -> ModelBundle:
    """Write an in-memory bundle (e.g. one with a refitted temperature) as a bundle folder at ``uri``."""
    fs, root = filesystem(uri, storage_options)
    fs.makedirs(root, exist_ok=True)
    with fs.open(join_uri(root, _WEIGHTS), "wb") as f:
        f.write(save_safetensors(bundle.state_dict, metadata={"version": bundle.version}))
    # The manifest goes last: a folder with bundle.json is a complete bundle.
    with fs.open(join_uri(root, _MANIFEST), "w") as f:
        json.dump(bundle.manifest(), f, indent=2, sort_keys=True)
    return bundle


def load_bundle(
    uri: str | None = None, storage_options: Mapping[str, Any] | None = None, *, weights: bool = True
) -> ModelBundle:
    """Load a bundle folder from a local path or fsspec URI (the demo bundle when ``uri`` is None).

    Args:
        weights: read ``model.safetensors`` too. Featurization and validation need only the configs;
            with ``False`` the weights file is checked to exist but not read (``base`` weighs ~340 MB).

    Raises:
        BundleError: the folder, a file, or a field is missing or malformed.
    """
    uri = uri or default_bundle_uri()
    try:
        fs, root = filesystem(uri, storage_options)
        with fs.open(join_uri(root, _MANIFEST), "r") as f:
            manifest = json.load(f)
        if weights:
            with fs.open(join_uri(root, _WEIGHTS), "rb") as f:
                state = load_safetensors(f.read())
        elif fs.exists(join_uri(root, _WEIGHTS)):
            state = {}
        else:
            raise FileNotFoundError(join_uri(root, _WEIGHTS))
    except FileNotFoundError as e:
        raise BundleError(
            f"no model bundle at {uri!r}: {e}. A bundle is a folder with {_MANIFEST} and {_WEIGHTS}."
        ) from e
    except (OSError, ValueError) as e:
        raise BundleError(f"cannot read model bundle at {uri!r}: {e}") from e
    if manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(
            f"bundle format {manifest.get('format')!r} at {uri!r}; this code reads format {BUNDLE_FORMAT}"
        )
    try:
        return ModelBundle(
            model=config_from_dict(ModelConfig, manifest["model"]),
            features=config_from_dict(FeatureConfig, manifest["features"]),
            postprocess=config_from_dict(PostprocessConfig, manifest.get("postprocess", {})),
            labels=tuple(manifest["labels"]),
            version=str(manifest["version"]),
            preset=str(manifest.get("preset", "custom")),
            provenance=dict(manifest.get("provenance", {})),
            state_dict=state,
        )
    except KeyError as e:
        raise BundleError(f"{_MANIFEST} at {uri!r} lacks the field {e}") from e
    except ConfigError as e:
        raise BundleError(f"{_MANIFEST} at {uri!r} holds an invalid config: {e}") from e
