"""musicnn's TensorFlow checkpoints (PyPI ``musicnn==0.1.0``) -> AcousticSense bundles.

The wheel holds TF-1 checkpoints ``MSD_musicnn`` and ``MTT_musicnn``: 150 variables each, of which
64 are parameters and batch-norm statistics (792,079 values); the rest are Adam slots and are dropped.
:func:`convert_musicnn` reads them with :mod:`acousticsense.convert.tf_checkpoint` (no TensorFlow),
maps them onto :class:`acousticsense.models.Musicnn` and writes ``musicnn-msd``, ``musicnn-mtt`` and
the two side by side, ``musicnn-msd-mtt``, with musicnn's licence notice in each bundle folder.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from acousticsense.bundle import ModelBundle, write_bundle
from acousticsense.config import FeatureConfig, HeadConfig, PostprocessConfig
from acousticsense.convert.tf_checkpoint import read_checkpoint
from acousticsense.errors import BundleError
from acousticsense.models.musicnn import MusicnnConfig

__all__ = [
    "MUSICNN_WHEEL",
    "MUSICNN_WHEEL_SHA256",
    "MSD_TAGS",
    "MTT_TAGS",
    "MSD_GENRES",
    "MTT_GENRES",
    "MUSICNN_FEATURES",
    "musicnn_state_dict",
    "convert_musicnn",
    "download_wheel",
]

MUSICNN_WHEEL = "musicnn-0.1.0-py3-none-any.whl"
MUSICNN_WHEEL_SHA256 = "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"

# Output order of the released checkpoints (musicnn/configuration.py).
MSD_TAGS: tuple[str, ...] = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s", "alternative rock",
    "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock", "soul", "indie rock", "Mellow",
    "electronica", "80s", "folk", "90s", "chill", "instrumental", "punk", "oldies", "blues", "hard rock", "ambient",
    "acoustic", "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country", "easy listening",
    "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb", "indie pop", "sad",
    "House", "happy",
)  # fmt: skip
MTT_TAGS: tuple[str, ...] = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano", "ambient",
    "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing", "vocals", "no vocals",
    "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal", "pop", "soft", "sitar", "solo",
    "man", "classic", "choir", "voice", "new age", "dance", "male voice", "female vocal", "beats", "harp", "cello",
    "no voice", "weird", "country", "metal", "female voice", "choral",
)  # fmt: skip

# Genre vocabulary: which tags speak for which genre (names follow the article's genres where they exist).
# Tags in no genre (decades, moods, voices, instruments) are still reported in the `tags` column.
MSD_GENRES: dict[str, tuple[str, ...]] = {
    "Rock": ("rock", "alternative", "indie", "alternative rock", "classic rock", "indie rock", "hard rock", "punk",
             "Progressive rock"),
    "Pop": ("pop", "indie pop"),
    "Electronic": ("electronic", "electronica", "electro", "House", "dance"),
    "Jazz": ("jazz",),
    "Metal": ("metal", "heavy metal"),
    "R&B": ("rnb", "soul", "funk"),
    "Folk": ("folk",),
    "Blues": ("blues",),
    "Hip-Hop": ("Hip-Hop",),
    "Country": ("country",),
    "Ambient": ("ambient", "chillout"),
}  # fmt: skip
MTT_GENRES: dict[str, tuple[str, ...]] = {
    "Classical": ("classical", "classic", "opera", "choral", "harpsichord"),
    "Electronic": ("techno", "electronic", "dance"),
    "Rock": ("rock",),
    "Pop": ("pop",),
    "Metal": ("metal",),
    "Country": ("country",),
    "World": ("indian", "sitar"),
    "Ambient": ("ambient", "new age"),
}

# musicnn's input: 16 kHz, n_fft 512, hop 256, 96 Slaney mels, log10(1 + 10000 mel), 3 s (187-frame) patches.
MUSICNN_FEATURES = FeatureConfig(
    sample_rate_hz=16000,
    n_fft=512,
    hop_length=256,
    n_mels=96,
    front_end="log_compressed_mel",
    compression_gain=10000.0,
    window_frames=187,
    norm_mean=0.0,
    norm_std=1.0,
)

_LICENCE = "LICENSE.musicnn.md"
_CITATION = (
    "Pons, J. and Serra, X. (2019). musicnn: pre-trained convolutional neural networks for music audio "
    "tagging. ISMIR late-breaking/demo. https://github.com/jordipons/musicnn"
)
# Published test-set scores (the wheel's experiment.result files).
_SCORES = {"MSD": {"roc_auc": 0.8802, "pr_auc": 0.2891}, "MTT": {"roc_auc": 0.9067, "pr_auc": 0.3831}}

# TF layer names in creation order -> module paths in MusicnnNetwork.
_CONVS = ["timbral.0", "timbral.1", "temporal.0", "temporal.1", "temporal.2", "midend.0", "midend.1", "midend.2"]
_BNS = ["input_bn"] + [f"{c}.bn" for c in _CONVS] + ["pool_bn", "dense_bn"]


def musicnn_state_dict(tensors: dict[str, np.ndarray], prefix: str = "") -> dict[str, torch.Tensor]:
    """Map one musicnn checkpoint's parameters and BN statistics onto a :class:`MusicnnNetwork`'s names.

    Args:
        tensors: the checkpoint's tensors by TF name (``conv2d_3/kernel`` …), Adam slots allowed (ignored).
        prefix: prepended to every name (``networks.0.`` inside :class:`Musicnn`).

    Raises:
        BundleError: a tensor the port expects is missing.
    """
    state: dict[str, torch.Tensor] = {}

    def take(name: str) -> torch.Tensor:
        if name not in tensors:
            raise BundleError(f"musicnn checkpoint lacks {name!r}")
        return torch.from_numpy(np.ascontiguousarray(tensors[name], dtype=np.float32))

    for i, path in enumerate(_CONVS):
        kernel = take(f"conv2d{'' if i == 0 else f'_{i}'}/kernel")  # (time, mel|channels, in, out)
        if path.startswith("midend"):  # a [7, C] 2-D conv over a C-wide image is a 1-D conv over C channels
            weight = kernel[:, :, 0, :].permute(2, 1, 0)
        else:
            weight = kernel.permute(3, 2, 0, 1)  # -> (out, in, time, mel)
        state[f"{prefix}{path}.conv.weight"] = weight.contiguous()
        state[f"{prefix}{path}.conv.bias"] = take(f"conv2d{'' if i == 0 else f'_{i}'}/bias")
    for i, path in enumerate(_BNS):
        tf = f"batch_normalization{'' if i == 0 else f'_{i}'}"
        for ours, theirs in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                             ("running_var", "moving_variance")):  # fmt: skip
            state[f"{prefix}{path}.{ours}"] = take(f"{tf}/{theirs}")
        state[f"{prefix}{path}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    for path, tf in (("dense", "dense"), ("output", "dense_1")):
        state[f"{prefix}{path}.weight"] = take(f"{tf}/kernel").T.contiguous()
        state[f"{prefix}{path}.bias"] = take(f"{tf}/bias")
    return state


def download_wheel(directory: Path) -> Path:
    """``pip download --no-deps musicnn==0.1.0`` into ``directory`` (``pip install musicnn`` fails on 3.11)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "musicnn==0.1.0", "-d", str(directory)],
        check=True,
    )
    return directory / MUSICNN_WHEEL


def convert_musicnn(wheel: Path, output_dir: Path, names: Sequence[str] | None = None) -> dict[str, ModelBundle]:
    """Write the musicnn bundles from the PyPI wheel.

    Args:
        wheel: ``musicnn-0.1.0-py3-none-any.whl``; its sha256 must be :data:`MUSICNN_WHEEL_SHA256`.
        output_dir: bundles go to ``output_dir/<name>``.
        names: any of ``musicnn-msd``, ``musicnn-mtt``, ``musicnn-msd-mtt`` (default: all three).

    Raises:
        BundleError: the wheel is not the published one, or a checkpoint is incomplete.
    """
    digest = hashlib.sha256(Path(wheel).read_bytes()).hexdigest()
    if digest != MUSICNN_WHEEL_SHA256:
        raise BundleError(f"{wheel} has sha256 {digest}; musicnn 0.1.0's wheel on PyPI has {MUSICNN_WHEEL_SHA256}")
    names = list(names or ("musicnn-msd", "musicnn-mtt", "musicnn-msd-mtt"))
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as zf:
        zf.extractall(tmp)
        root = Path(tmp) / "musicnn"
        licence = next(Path(tmp).glob("musicnn-*.dist-info/LICENSE*")).read_text()
        checkpoints = {which: read_checkpoint(f"{root / f'{which}_musicnn'}/") for which in ("MSD", "MTT")}
    provenance = {
        "source": f"PyPI musicnn==0.1.0 ({MUSICNN_WHEEL}, sha256 {MUSICNN_WHEEL_SHA256})",
        "licence": "ISC, Copyright (c) Music Technology Group, Universitat Pompeu Fabra 2019 (see LICENSE.musicnn.md)",
        "citation": _CITATION,
        "command": "python -m acousticsense.convert musicnn",
    }
    written = {}
    for name in names:
        parts = {"musicnn-msd": ["MSD"], "musicnn-mtt": ["MTT"], "musicnn-msd-mtt": ["MSD", "MTT"]}[name]
        bundle = _bundle(name, parts, checkpoints, provenance)
        target = Path(output_dir) / name
        write_bundle(str(target), bundle)
        (target / _LICENCE).write_text(licence)
        written[name] = bundle
    return written


def _bundle(name: str, parts: list[str], checkpoints: dict, provenance: dict) -> ModelBundle:
    tags = {"MSD": MSD_TAGS, "MTT": MTT_TAGS}
    genre_maps = {"MSD": MSD_GENRES, "MTT": MTT_GENRES}
    state: dict[str, torch.Tensor] = {}
    for i, part in enumerate(parts):
        state |= musicnn_state_dict(checkpoints[part], prefix=f"networks.{i}.")
    if len(parts) == 1:
        labels, outputs = tags[parts[0]], ()
    else:  # the union of the tags: a tag both networks know is the max of their two logits
        flat = [tag for part in parts for tag in tags[part]]
        labels = tuple(dict.fromkeys(flat))
        outputs = tuple(tuple(i for i, t in enumerate(flat) if t == label) for label in labels)
    genres: dict[str, tuple[str, ...]] = {}
    for part in parts:
        for genre, members in genre_maps[part].items():
            genres[genre] = tuple(dict.fromkeys(genres.get(genre, ()) + members))
    config = MusicnnConfig(networks=len(parts), outputs=outputs)
    return ModelBundle(
        model=config,
        features=MUSICNN_FEATURES,
        postprocess=PostprocessConfig(),
        labels=labels,
        version=f"{name}-0.1.0",
        head=HeadConfig(activation="sigmoid", genres=genres),
        preset=name,
        provenance={**provenance, "trained_on": " + ".join(parts), "published_scores": {p: _SCORES[p] for p in parts}},
        state_dict=state,
    )
