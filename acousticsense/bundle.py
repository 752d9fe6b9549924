"""Model bundles: ``model.safetensors`` + ``bundle.json`` in a folder, local or any fsspec URI.

A bundle is all that batch and serving need: ``bundle.json`` names the model family and its exact
hyper-parameters, the feature front end, the output head (softmax or sigmoid, and how labels become
genres) and the postprocessing, so loading it rebuilds all of them and both faces compute identical
predictions for identical bytes. Bundles shipped with the package are addressed by name
(:data:`NAMED_BUNDLES`, e.g. ``musicnn-msd``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from acousticsense.config import FeatureConfig, HeadConfig, PostprocessConfig, config_from_dict
from acousticsense.errors import BundleError, ConfigError
from acousticsense.models import ModelConfig, build_model, model_config_from_dict, model_config_to_dict
from acousticsense.options import OVERRIDES, check_overrides
from acousticsense.postprocess import OutputHead
from acousticsense.storage import filesystem, join_uri

__all__ = [
    "BUNDLE_FORMAT",
    "DEFAULT_BUNDLE",
    "NAMED_BUNDLES",
    "ModelBundle",
    "save_bundle",
    "write_bundle",
    "load_bundle",
    "resolve_bundle_uri",
    "default_bundle_uri",
]

BUNDLE_FORMAT = 2
_WEIGHTS = "model.safetensors"
_MANIFEST = "bundle.json"

# Bundles shipped inside the package, by the name `--model` accepts (folders under acousticsense/bundles/).
NAMED_BUNDLES: dict[str, str] = {
    "musicnn-msd": "musicnn (Pons & Serra 2019) trained on the Million Song Dataset: 50 Last.fm tags",
    "musicnn-mtt": "musicnn trained on MagnaTagATune: 50 tags incl. classical, techno, opera, indian",
    "musicnn-msd-mtt": "both musicnn networks on the same patches; the union of their tags",
    "synthetic-tiny": "a tiny ViT trained on this repo's synthetic corpus; for tests, knows no real music",
}
DEFAULT_BUNDLE = "musicnn-msd-mtt"


@dataclass(frozen=True)
class ModelBundle:
    """Everything a loaded bundle holds. ``state_dict`` maps parameter names to CPU tensors.

    ``labels`` are the model's outputs in order (genres for a single-label model, tags for a tagger);
    ``head`` says how they become genres (:attr:`genres`, :attr:`output_head`).
    """

    model: ModelConfig
    features: FeatureConfig
    postprocess: PostprocessConfig
    labels: tuple[str, ...]
    version: str
    head: HeadConfig = field(default_factory=HeadConfig)
    preset: str = "custom"
    provenance: dict[str, Any] = field(default_factory=dict)
    state_dict: dict[str, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)
    # What it was loaded from: a shipped bundle's name (each process resolves it to its own package folder:
    # on a cluster that path differs from node to node) or a URI. with_weights reads the weights from it.
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if len(self.labels) != self.model.n_classes:
            raise BundleError(f"bundle has {len(self.labels)} labels but the model has {self.model.n_classes} classes")
        if len(set(self.labels)) != len(self.labels):
            raise BundleError("bundle labels must be unique")
        if tuple(self.model.input_shape) != (self.features.n_mels, self.features.window_frames):
            raise BundleError(
                f"model input {tuple(self.model.input_shape)} does not match the feature config's "
                f"n_mels x window_frames ({self.features.n_mels}, {self.features.window_frames})"
            )
        try:
            self.output_head  # noqa: B018 - validates the genre mapping against the labels
        except ConfigError as e:
            raise BundleError(str(e)) from e

    @property
    def feature_hash(self) -> str:
        return self.features.feature_hash()

    @functools.cached_property
    def output_head(self) -> OutputHead:
        """Labels, activation and genre mapping, ready for :func:`acousticsense.predict_file`."""
        return OutputHead(self.labels, self.head)

    @property
    def genres(self) -> tuple[str, ...]:
        """The genres this bundle can name (``top_genre``, ``top_k`` and ``probabilities`` are over these)."""
        return self.output_head.genres

    def build_model(self) -> torch.nn.Module:
        """The family's module in eval mode with the bundle's weights, loaded strictly."""
        model = build_model(self.model)
        missing, unexpected = model.load_state_dict(self.state_dict, strict=False)
        if missing or unexpected:
            raise BundleError(f"weights do not fit the architecture: missing {missing}, unexpected {unexpected}")
        return model.eval()

    def with_weights(self, storage_options: Mapping[str, Any] | None = None) -> ModelBundle:
        """This bundle with its weights: itself when it holds them, else a copy with ``source``'s weights.

        The batch driver and the service's builder resolve the bundle's configs (and the run's overrides)
        once, without weights; only the processes that run the model read the weights, here.

        Raises:
            BundleError: no weights and no ``source`` to read them from, or an unreadable weights file.
        """
        if self.state_dict:
            return self
        if self.source is None:
            raise BundleError(f"bundle {self.version!r} holds no weights and does not say where it was loaded from")
        try:
            state = _read_weights(resolve_bundle_uri(self.source), storage_options)
        except (OSError, ValueError, SafetensorError) as e:
            raise BundleError(f"cannot read the weights of the bundle at {self.source!r}: {e}") from e
        return dataclasses.replace(self, state_dict=state)

    def with_postprocess(self, **changes: Any) -> ModelBundle:
        """A copy with some postprocessing fields replaced (e.g. ``temperature``, ``review_threshold``)."""
        return dataclasses.replace(self, postprocess=dataclasses.replace(self.postprocess, **changes))

    def with_overrides(self, **changes: Any) -> ModelBundle:
        """A copy with per-run overrides applied by name; ``None`` values keep the bundle's.

        Batch jobs and the service apply their options through this one method, so the same options
        always give the same features and predictions. The names are the fields declared ``per_run`` in
        ``acousticsense.config`` (``acousticsense.options.OVERRIDES``); other fields are the bundle's own
        (``with_postprocess`` replaces a postprocessing field such as a fitted temperature).

        Raises:
            ConfigError: a name that is not a per-run override, or a bad value.
        """
        given = check_overrides(changes)
        bundle = self
        feature_changes = {k: v for k, v in given.items() if OVERRIDES[k].config is FeatureConfig}
        if feature_changes:
            bundle = dataclasses.replace(bundle, features=dataclasses.replace(bundle.features, **feature_changes))
        post_changes = {k: v for k, v in given.items() if OVERRIDES[k].config is PostprocessConfig}
        return bundle.with_postprocess(**post_changes) if post_changes else bundle

    def manifest(self) -> dict[str, Any]:
        """The JSON-serialisable description written to ``bundle.json``."""
        return {
            "format": BUNDLE_FORMAT,
            "version": self.version,
            "preset": self.preset,
            "labels": list(self.labels),
            "model": model_config_to_dict(self.model),
            "features": dataclasses.asdict(self.features),
            "feature_hash": self.feature_hash,
            "head": {
                "activation": self.head.activation,
                "genres": None if self.head.genres is None else {g: list(t) for g, t in self.head.genres.items()},
            },
            "postprocess": dataclasses.asdict(self.postprocess),
            "provenance": self.provenance,
        }


def resolve_bundle_uri(name_or_uri: str | None = None) -> str:
    """The folder of a named bundle (:data:`NAMED_BUNDLES`), the default one for ``None``, else ``name_or_uri``."""
    name = name_or_uri or DEFAULT_BUNDLE
    if name in NAMED_BUNDLES:
        return str(resources.files("acousticsense") / "bundles" / name)
    return name


def default_bundle_uri() -> str:
    """Folder of the default bundle shipped inside the package (:data:`DEFAULT_BUNDLE`)."""
    return resolve_bundle_uri(None)


def save_bundle(
    uri: str,
    model: torch.nn.Module,
    *,
    features: FeatureConfig,
    labels: Sequence[str],
    version: str,
    head: HeadConfig | None = None,
    preset: str = "custom",
    postprocess: PostprocessConfig | None = None,
    provenance: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> ModelBundle:
    """Write ``model``'s weights and configs as a bundle folder at ``uri``; returns the bundle.

    ``model`` must be a registered family's module (it carries its config as ``model.config``).
    """
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "family"):
        raise BundleError("only models of a registered family (acousticsense.models) can be bundled")
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    bundle = ModelBundle(
        model=config,
        features=features,
        postprocess=postprocess or PostprocessConfig(),
        labels=tuple(labels),
        version=version,
        head=head or HeadConfig(),
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
        f.write("\n")
    return bundle


def load_bundle(
    uri: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    *,
    weights: bool = True,
    overrides: Mapping[str, Any] | None = None,
) -> ModelBundle:
    """Load a bundle by name (``musicnn-msd`` …) or from a folder at a local path or fsspec URI.

    ``None`` loads :data:`DEFAULT_BUNDLE`.

    Args:
        weights: read ``model.safetensors`` too. Featurization and validation need only the configs;
            with ``False`` the weights file is checked to exist but not read (``base`` weighs ~340 MB).
        overrides: a run's per-run overrides (:meth:`ModelBundle.with_overrides`; ``None`` values keep the
            bundle's). The batch job's driver and the service's ``build_app`` both load their bundle this way.

    Raises:
        BundleError: the folder, a file, or a field is missing or malformed.
        ConfigError: an override that is not a per-run override, or a value out of range for this bundle.
    """
    bundle = _load(uri, storage_options, weights)
    return bundle.with_overrides(**overrides) if overrides else bundle


def _load(uri: str | None, storage_options: Mapping[str, Any] | None, weights: bool) -> ModelBundle:
    """The bundle as its folder holds it (:func:`load_bundle` without overrides)."""
    source = uri or DEFAULT_BUNDLE
    uri = resolve_bundle_uri(source)
    try:
        fs, root = filesystem(uri, storage_options)
        with fs.open(join_uri(root, _MANIFEST), "r") as f:
            manifest = json.load(f)
        if weights:
            state = _read_weights(uri, storage_options)
        elif fs.exists(join_uri(root, _WEIGHTS)):
            state = {}
        else:
            raise FileNotFoundError(join_uri(root, _WEIGHTS))
    except FileNotFoundError as e:
        named = ", ".join(NAMED_BUNDLES)
        raise BundleError(
            f"no model bundle at {uri!r}: {e}. A bundle is a folder with {_MANIFEST} and {_WEIGHTS}, "
            f"or one of the shipped names: {named}."
        ) from e
    except (OSError, ValueError, SafetensorError) as e:  # SafetensorError: a corrupt weights file
        raise BundleError(f"cannot read model bundle at {uri!r}: {e}") from e
    manifest = _upgrade(manifest, uri)
    try:
        head = manifest.get("head") or {}
        return ModelBundle(
            model=model_config_from_dict(manifest["model"]),
            features=config_from_dict(FeatureConfig, manifest["features"]),
            postprocess=config_from_dict(PostprocessConfig, manifest.get("postprocess", {})),
            labels=tuple(manifest["labels"]),
            version=str(manifest["version"]),
            head=config_from_dict(HeadConfig, head),
            preset=str(manifest.get("preset", "custom")),
            provenance=dict(manifest.get("provenance", {})),
            state_dict=state,
            source=source,
        )
    except KeyError as e:
        raise BundleError(f"{_MANIFEST} at {uri!r} lacks the field {e}") from e
    except ConfigError as e:
        raise BundleError(f"{_MANIFEST} at {uri!r} holds an invalid config: {e}") from e


def _read_weights(uri: str, storage_options: Mapping[str, Any] | None) -> dict[str, torch.Tensor]:
    """The tensors of the bundle folder at ``uri`` (``FileNotFoundError`` / ``OSError`` pass through)."""
    fs, root = filesystem(uri, storage_options)
    with fs.open(join_uri(root, _WEIGHTS), "rb") as f:
        return load_safetensors(f.read())


def _upgrade(manifest: dict[str, Any], uri: str) -> dict[str, Any]:
    """Read format 1 (ViT only, dB normalisation fields) as format 2."""
    version = manifest.get("format")
    if version == BUNDLE_FORMAT:
        return manifest
    if version != 1:
        raise BundleError(f"bundle format {version!r} at {uri!r}; this code reads formats 1 and {BUNDLE_FORMAT}")
    features = dict(manifest.get("features", {}))
    for old, new in (("norm_mean_db", "norm_mean"), ("norm_std_db", "norm_std")):
        if old in features:
            features[new] = features.pop(old)
    return {**manifest, "format": BUNDLE_FORMAT, "features": features, "model": {"family": "vit", **manifest["model"]}}
