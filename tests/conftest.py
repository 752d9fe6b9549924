"""Shared fixtures: a small untrained bundle, audio writers, and one local Ray per test module that asks."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch

from acousticsense import GENRES, FeatureConfig, WindowClassifier, model_config_for, save_bundle

ROOT = Path(__file__).resolve().parents[1]


def write_audio(
    path: Path,
    seconds: float,
    sample_rate_hz: int = 22050,
    channels: int = 1,
    frequency_hz: float = 440.0,
    subtype: str | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Write a tone plus a little noise; OGG/MP3 in blocks (libsndfile can crash on one large write).

    Returns the float32 ``(samples, channels)`` array that was written.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate_hz)) / sample_rate_hz
    tone = 0.5 * np.sin(2 * np.pi * frequency_hz * t)
    data = np.stack([tone * (1 - 0.1 * c) for c in range(channels)], axis=1)
    data = (data + 0.01 * rng.standard_normal(data.shape)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix.lstrip(".").upper()
    with sf.SoundFile(path, "w", samplerate=sample_rate_hz, channels=channels, format=fmt, subtype=subtype) as f:
        for start in range(0, len(data), 16384):
            f.write(data[start : start + 16384])
    return data


def write_m4a(path: Path, frames: np.ndarray, sr: int) -> Path:
    """Write stereo ``(samples, 2)`` float32 as AAC in an MP4 container with PyAV."""
    if frames.ndim != 2 or frames.shape[1] != 2:
        raise ValueError("write_m4a wants stereo (samples, 2) frames")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=sr)
        stream.layout = "stereo"
        planar = np.ascontiguousarray(frames.T, dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout="stereo")
        frame.sample_rate = sr
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def write_small_ast(folder: Path, labels: list[str], noise: float = 0.0, **dims: int):
    """Save a small random ``transformers`` AST (hidden 64, 2 layers by default) as the hub's files in ``folder``.

    ``noise`` perturbs every parameter (cls/distillation/position start at 0 and LayerNorms at 1/0), so a port
    that mishandles one of them cannot pass. Returns the transformers model, in eval mode.
    """
    from transformers import ASTConfig, ASTForAudioClassification

    torch.manual_seed(0)
    config = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, max_length=128)
    config |= dims
    config |= dict(id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
    model = ASTForAudioClassification(ASTConfig(**config)).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(noise * torch.randn_like(param))
    model.save_pretrained(folder)
    return model


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An untrained ``tiny`` bundle with a 10 s excerpt, so tests do not depend on the demo weights."""
    torch.manual_seed(0)
    features = FeatureConfig(excerpt_s=10.0)
    model = WindowClassifier(model_config_for("tiny", features, len(GENRES)))
    path = tmp_path_factory.mktemp("bundle") / "tiny"
    save_bundle(str(path), model, features=features, labels=GENRES, version="test-tiny-0", preset="tiny")
    return str(path)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray for the module (2 CPUs, like CI), shut down afterwards."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    # address="local": never attach to a `ray start` cluster that happens to run on this machine.
    ray.init(address="local", num_cpus=2, include_dashboard=False, ignore_reinit_error=True, logging_level="ERROR")
    yield ray
    ray.shutdown()


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "requires_cuda" in item.keywords:
            item.add_marker(skip)
