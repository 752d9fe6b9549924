"""AcousticSense core: audio excerpts -> log-mel windows -> ViT classifier -> per-file predictions.

Plain Python and PyTorch; no Ray. The batch job (``pipelines/``) and the service (``serving/``)
wire these callables together.
"""

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
from acousticsense.bundle import BUNDLE_FORMAT, ModelBundle, default_bundle_uri, load_bundle, save_bundle, write_bundle
from acousticsense.config import GENRES, MODEL_PRESETS, FeatureConfig, ModelConfig, PostprocessConfig
from acousticsense.errors import AcousticSenseError, AudioDecodeError, BundleError, ConfigError
from acousticsense.features import LogMel, featurize, frame_windows, log_mel, mel_filterbank
from acousticsense.inference import WindowPredictor, resolve_precision, select_device
from acousticsense.model import WindowClassifier, model_config_for
from acousticsense.postprocess import FilePrediction, aggregate, predict_file, softmax, top_k
from acousticsense.storage import join_uri, list_files, open_binary

__version__ = "0.1.0"

__all__ = [
    "AcousticSenseError",
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
