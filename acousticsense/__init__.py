"""AcousticSense core: audio excerpts -> spectrogram windows -> a registered model family -> per-file predictions.

Plain Python and PyTorch; no Ray. The batch job (``pipelines/``) and the service (``serving/``)
wire these callables together.

Names are imported on first use (PEP 562), so ``import acousticsense.storage`` (what the batch
writer's worker needs) does not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from acousticsense.audio import (
        AudioInfo,
        DecodedExcerpt,
        audio_info,
        choose_excerpt,
        choose_segments,
        decode_excerpt,
        decode_segments,
        downmix,
        read_excerpt,
        resample,
    )
    from acousticsense.bundle import (
        BUNDLE_FORMAT,
        DEFAULT_BUNDLE,
        NAMED_BUNDLES,
        ModelBundle,
        default_bundle_uri,
        load_bundle,
        resolve_bundle_uri,
        save_bundle,
        write_bundle,
    )
    from acousticsense.config import GENRES, FeatureConfig, HeadConfig, PostprocessConfig
    from acousticsense.errors import AcousticSenseError, AudioDecodeError, BundleError, ConfigError
    from acousticsense.features import LogMel, featurize, frame_windows, front_end, log_mel, mel_filterbank
    from acousticsense.inference import WindowPredictor, resolve_precision, select_device
    from acousticsense.models import (
        MODEL_PRESETS,
        ModelConfig,
        MusicnnConfig,
        ViTConfig,
        WindowClassifier,
        build_model,
        model_config_for,
    )
    from acousticsense.postprocess import FilePrediction, OutputHead, aggregate, predict_file, sigmoid, softmax, top_k
    from acousticsense.storage import join_uri, list_files, open_binary

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "AcousticSenseError": "acousticsense.errors",
    "aggregate": "acousticsense.postprocess",
    "audio_info": "acousticsense.audio",
    "AudioDecodeError": "acousticsense.errors",
    "AudioInfo": "acousticsense.audio",
    "BUNDLE_FORMAT": "acousticsense.bundle",
    "build_model": "acousticsense.models",
    "DEFAULT_BUNDLE": "acousticsense.bundle",
    "front_end": "acousticsense.features",
    "HeadConfig": "acousticsense.config",
    "MusicnnConfig": "acousticsense.models",
    "NAMED_BUNDLES": "acousticsense.bundle",
    "OutputHead": "acousticsense.postprocess",
    "resolve_bundle_uri": "acousticsense.bundle",
    "sigmoid": "acousticsense.postprocess",
    "ViTConfig": "acousticsense.models",
    "BundleError": "acousticsense.errors",
    "choose_excerpt": "acousticsense.audio",
    "choose_segments": "acousticsense.audio",
    "ConfigError": "acousticsense.errors",
    "decode_excerpt": "acousticsense.audio",
    "decode_segments": "acousticsense.audio",
    "DecodedExcerpt": "acousticsense.audio",
    "default_bundle_uri": "acousticsense.bundle",
    "downmix": "acousticsense.audio",
    "FeatureConfig": "acousticsense.config",
    "featurize": "acousticsense.features",
    "FilePrediction": "acousticsense.postprocess",
    "frame_windows": "acousticsense.features",
    "GENRES": "acousticsense.config",
    "join_uri": "acousticsense.storage",
    "list_files": "acousticsense.storage",
    "load_bundle": "acousticsense.bundle",
    "log_mel": "acousticsense.features",
    "LogMel": "acousticsense.features",
    "mel_filterbank": "acousticsense.features",
    "model_config_for": "acousticsense.models",
    "MODEL_PRESETS": "acousticsense.models",
    "ModelBundle": "acousticsense.bundle",
    "ModelConfig": "acousticsense.models",
    "open_binary": "acousticsense.storage",
    "PostprocessConfig": "acousticsense.config",
    "predict_file": "acousticsense.postprocess",
    "read_excerpt": "acousticsense.audio",
    "resample": "acousticsense.audio",
    "resolve_precision": "acousticsense.inference",
    "save_bundle": "acousticsense.bundle",
    "select_device": "acousticsense.inference",
    "softmax": "acousticsense.postprocess",
    "top_k": "acousticsense.postprocess",
    "WindowClassifier": "acousticsense.models",
    "WindowPredictor": "acousticsense.inference",
    "write_bundle": "acousticsense.bundle",
}

__all__ = [
    "AcousticSenseError",
    "DEFAULT_BUNDLE",
    "HeadConfig",
    "MusicnnConfig",
    "NAMED_BUNDLES",
    "OutputHead",
    "ViTConfig",
    "build_model",
    "front_end",
    "resolve_bundle_uri",
    "sigmoid",
    "AudioDecodeError",
    "AudioInfo",
    "BUNDLE_FORMAT",
    "BundleError",
    "ConfigError",
    "DecodedExcerpt",
    "FeatureConfig",
    "FilePrediction",
    "GENRES",
    "LogMel",
    "MODEL_PRESETS",
    "ModelBundle",
    "ModelConfig",
    "PostprocessConfig",
    "WindowClassifier",
    "WindowPredictor",
    "aggregate",
    "audio_info",
    "choose_excerpt",
    "choose_segments",
    "decode_excerpt",
    "decode_segments",
    "default_bundle_uri",
    "downmix",
    "featurize",
    "frame_windows",
    "join_uri",
    "list_files",
    "load_bundle",
    "log_mel",
    "mel_filterbank",
    "model_config_for",
    "open_binary",
    "predict_file",
    "read_excerpt",
    "resample",
    "resolve_precision",
    "save_bundle",
    "select_device",
    "softmax",
    "top_k",
    "write_bundle",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
