"""transformers-format AST checkpoints -> AcousticSense bundles.

``MIT/ast-finetuned-audioset-10-10-0.4593`` and its kin are ViT-B/16 models over a 128-bin Kaldi
filterbank of 10.24 s (1024 frames at 16 kHz, hop 10 ms). :func:`convert_ast` reads such a folder
(``config.json`` + ``model.safetensors``, as ``save_pretrained`` writes it) without transformers and
writes a bundle with the ``kaldi_fbank`` front end, AST's normalisation and, for AudioSet label sets,
a mapping from AudioSet's music-genre classes to genres.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from acousticsense.bundle import ModelBundle, save_bundle
from acousticsense.config import FeatureConfig, HeadConfig, PostprocessConfig
from acousticsense.errors import BundleError
from acousticsense.models.ast import AST_NORM_MEAN, AST_NORM_STD, load_transformers_ast

__all__ = ["AUDIOSET_GENRES", "ast_features", "convert_ast"]

# AudioSet ontology classes (display names, as in the checkpoints' id2label) that name a music genre.
AUDIOSET_GENRES: dict[str, tuple[str, ...]] = {
    "Blues": ("Blues",),
    "Classical": ("Classical music", "Opera"),
    "Country": ("Country", "Bluegrass"),
    "Disco": ("Disco",),
    "Electronic": ("Electronic music", "House music", "Techno", "Dubstep", "Drum and bass", "Electronica",
                   "Electronic dance music", "Trance music"),
    "Folk": ("Folk music", "Traditional music"),
    "Hip-Hop": ("Hip hop music",),
    "Jazz": ("Jazz", "Swing music"),
    "Latin": ("Music of Latin America", "Salsa music", "Flamenco"),
    "Metal": ("Heavy metal",),
    "Pop": ("Pop music",),
    "R&B": ("Rhythm and blues", "Soul music", "Funk", "Gospel music"),
    "Reggae": ("Reggae", "Ska"),
    "Rock": ("Rock music", "Punk rock", "Grunge", "Progressive rock", "Rock and roll", "Psychedelic rock"),
    "World": ("Music of Africa", "Afrobeat", "Music of Asia", "Carnatic music", "Music of Bollywood",
              "Middle Eastern music"),
    "Ambient": ("Ambient music", "New-age music"),
}  # fmt: skip


def ast_features(window_frames: int = 1024, n_mels: int = 128) -> FeatureConfig:
    """AST's front end: Kaldi fbank of 25 ms frames every 10 ms at 16 kHz, ``(x + 4.27) / (2 * 4.57)``."""
    return FeatureConfig(
        sample_rate_hz=16000,
        n_fft=512,
        hop_length=160,
        win_length=400,
        n_mels=n_mels,
        f_min_hz=20.0,
        front_end="kaldi_fbank",
        window_frames=window_frames,
        norm_mean=AST_NORM_MEAN,
        norm_std=2 * AST_NORM_STD,  # the extractor divides by twice the dataset std
    )


def convert_ast(
    checkpoint: str | Path, output: str, *, version: str | None = None, activation: str = "auto",
    storage_options: Mapping[str, Any] | None = None,
) -> ModelBundle:  # fmt: skip
    """Write a bundle for the AST checkpoint folder ``checkpoint`` at ``output`` (a folder or URI).

    Args:
        activation: ``sigmoid`` (AudioSet models are multi-label), ``softmax`` (a single-label fine-tune),
            or ``auto``: sigmoid when ``config.json`` says ``multi_label_classification`` or the labels are
            AudioSet's, else softmax.

    Raises:
        BundleError: the folder does not hold a readable AST checkpoint.
    """
    folder = Path(checkpoint)
    model, labels = load_transformers_ast(folder)
    config = json.loads((folder / "config.json").read_text())
    present = set(labels)
    genres = {g: tuple(t for t in tags if t in present) for g, tags in AUDIOSET_GENRES.items()}
    genres = {g: tags for g, tags in genres.items() if tags}
    # AudioSet's label set has the class "Music" and genre classes; any other set's labels are its genres.
    mapping = genres if "Music" in present and len(genres) >= 2 else None
    if activation == "auto":
        multi = config.get("problem_type") == "multi_label_classification" or mapping is not None
        activation = "sigmoid" if multi else "softmax"
    if activation not in ("softmax", "sigmoid"):
        raise BundleError(f"activation must be auto, softmax or sigmoid, got {activation!r}")
    return save_bundle(
        output,
        model,
        features=ast_features(model.config.window_frames, model.config.n_mels),
        labels=labels,
        version=version or folder.resolve().name,
        head=HeadConfig(activation=activation, genres=mapping),  # type: ignore[arg-type]
        preset="ast",
        postprocess=PostprocessConfig(),
        provenance={
            "source": str(folder.resolve()),
            "architecture": config.get("architectures", ["ASTForAudioClassification"]),
            "command": "python -m acousticsense.convert ast",
            "note": "windows shorter than 10.24 s are tiled to 1024 frames (AST's extractor pads with silence)",
        },
        storage_options=storage_options,
    )
