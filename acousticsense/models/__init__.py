"""Model families behind one registry: a bundle names its family, the registry builds it.

Each family is a frozen config dataclass (with a ``family`` class attribute, ``n_classes`` and
``input_shape``) plus an ``nn.Module`` built from it that maps ``(batch, n_mels, window_frames)``
windows to ``(batch, n_classes)`` logits. Adding a family is one module and one :func:`register_family`
line below; the bundle, the batch job and the service need no change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from torch import nn

from acousticsense.config import config_from_dict
from acousticsense.errors import ConfigError
from acousticsense.models.ast import ASTClassifier, ASTConfig
from acousticsense.models.musicnn import Musicnn, MusicnnConfig
from acousticsense.models.vit import MODEL_PRESETS, ViTConfig, WindowClassifier, model_config_for

__all__ = [
    "ModelConfig",
    "ModelFamily",
    "MODEL_FAMILIES",
    "register_family",
    "build_model",
    "model_config_from_dict",
    "model_config_to_dict",
    "ViTConfig",
    "WindowClassifier",
    "MODEL_PRESETS",
    "model_config_for",
    "MusicnnConfig",
    "Musicnn",
    "ASTConfig",
    "ASTClassifier",
]


class ModelConfig(Protocol):
    """What every family's config offers (each is a frozen dataclass)."""

    family: str
    n_classes: int

    @property
    def input_shape(self) -> tuple[int, int]: ...


@dataclass(frozen=True)
class ModelFamily:
    """A registered family: its config type and the module built from it."""

    name: str
    config_type: type
    build: Callable[[Any], nn.Module]


MODEL_FAMILIES: dict[str, ModelFamily] = {}


def register_family(config_type: type, build: Callable[[Any], nn.Module]) -> None:
    """Register a family under ``config_type.family``."""
    MODEL_FAMILIES[config_type.family] = ModelFamily(config_type.family, config_type, build)


def _family(name: str) -> ModelFamily:
    if name not in MODEL_FAMILIES:
        raise ConfigError(f"unknown model family {name!r}; known: {sorted(MODEL_FAMILIES)}")
    return MODEL_FAMILIES[name]


def build_model(config: ModelConfig) -> nn.Module:
    """The family's module for ``config``, with freshly initialised weights, in eval mode."""
    return _family(config.family).build(config).eval()


def model_config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """The config of ``{"family": name, **fields}`` (what ``bundle.json`` holds under ``model``).

    Raises:
        ConfigError: an unknown family or field, or an invalid value.
    """
    fields = dict(data)
    family = _family(str(fields.pop("family", "vit")))
    return config_from_dict(family.config_type, fields)


def model_config_to_dict(config: ModelConfig) -> dict[str, Any]:
    """``{"family": name, **fields}``, JSON-ready."""
    return {"family": config.family, **dataclasses.asdict(config)}  # type: ignore[call-overload]


register_family(ViTConfig, WindowClassifier)
register_family(MusicnnConfig, Musicnn)
register_family(ASTConfig, ASTClassifier)
