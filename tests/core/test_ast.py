"""AST in plain PyTorch (acousticsense.models.ast) and its Kaldi fbank front end (acousticsense.fbank).

transformers is the reference: ``ASTFeatureExtractor`` (numpy path) for the front end, and a small
random ``ASTForAudioClassification`` written with ``save_pretrained`` for the model and the importers.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from acousticsense.errors import BundleError, ConfigError
from acousticsense.fbank import FBANK_LOG_FLOOR, KaldiFbank, kaldi_mel_filterbank, n_fbank_frames
from acousticsense.models.ast import (
    AST_NORM_MEAN,
    AST_NORM_STD,
    ASTClassifier,
    ASTConfig,
    ast_config_from_transformers,
    ast_input_from_fbank,
    ast_state_dict_from_transformers,
    load_transformers_ast,
)
from tests.conftest import write_small_ast

transformers = pytest.importorskip("transformers")

SR = 16000
N_1024 = 400 + 1023 * 160  # 164,080 samples: exactly 1024 frames, so the extractor neither pads nor cuts
# Measured against ASTFeatureExtractor (float32 here, float64 + complex64 there) on the clips below: max
# |diff| 8e-4 in log units (9e-5 after normalisation), median < 1e-6. The worst cells are always the
# lowest bands, whose energy after DC removal and pre-emphasis is ~1e-7, a millionth of the frame's:
# float32 rounding of the FFT is of that order. Where the log fbank is above -9 the max is 3e-4.
NORM_ATOL = 2e-4

# hidden 64, 2 layers, 4 heads; 100 frames with time stride 12 and mel stride 10 (12 x 8 = 96 patches): a
# non-square image and unequal strides, so a transposed orientation cannot pass.
SMALL_HF = dict(max_length=100, num_mel_bins=128, time_stride=12)
SMALL_LABELS = [f"class {i}" for i in range(5)]


def make_clip(kind: str, n_samples: int = N_1024, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / SR
    if kind == "tone":
        y = 0.5 * np.sin(2 * np.pi * 440.0 * t)
    elif kind == "noise":
        y = 0.1 * rng.standard_normal(n_samples)
    elif kind == "chord":
        y = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (261.63, 329.63, 392.0)) + 0.01 * rng.standard_normal(
            n_samples
        )
    else:
        raise ValueError(kind)
    return y.astype(np.float32)


@pytest.fixture(scope="module")
def extractor():
    from transformers import ASTFeatureExtractor

    with pytest.warns(UserWarning, match="all zero values"):  # Kaldi band 3 holds no FFT bin at n_fft 512 (ours too)
        return ASTFeatureExtractor()


@pytest.fixture(scope="module")
def fbank() -> KaldiFbank:
    return KaldiFbank()


@pytest.fixture(scope="module")
def hf_checkpoint(tmp_path_factory: pytest.TempPathFactory):
    """A small random ASTForAudioClassification, saved as the hub's files; every parameter non-trivial."""
    path = tmp_path_factory.mktemp("ast") / "checkpoint"
    model = write_small_ast(path, SMALL_LABELS, noise=0.05, **SMALL_HF)
    return model, path


# --- front end ---------------------------------------------------------------------------------------------------


def test_filterbank_matches_transformers(extractor):
    ours = kaldi_mel_filterbank(SR, 512, 128, 20.0, None)
    assert ours.shape == (128, 257) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, extractor.mel_filters.T, rtol=0, atol=1e-7)
    assert np.array_equal(ours[:, -1], np.zeros(128))  # Nyquist bin sits on the last band's upper edge


def test_window_is_symmetric_hann(fbank, extractor):
    np.testing.assert_allclose(fbank.window.numpy(), extractor.window, rtol=0, atol=1e-7)


@pytest.mark.parametrize("kind", ["tone", "noise", "chord"])
def test_fbank_matches_ast_feature_extractor(fbank, extractor, kind):
    y = make_clip(kind)
    assert n_fbank_frames(len(y)) == 1024
    reference = extractor(y, sampling_rate=SR, return_tensors="np")["input_values"][0]  # (1024, 128), normalised
    with torch.inference_mode():
        log_fbank = fbank(torch.from_numpy(y))
    assert log_fbank.shape == (128, 1024) and log_fbank.dtype == torch.float32
    ours = ((log_fbank - AST_NORM_MEAN) / (2 * AST_NORM_STD)).T.numpy()
    diff = np.abs(ours - reference)
    assert diff.max() <= NORM_ATOL, (diff.max(), np.unravel_index(diff.argmax(), diff.shape))
    assert np.median(diff) < 1e-6


@pytest.mark.parametrize("seconds", [1.0, 11.0])
def test_ast_input_pads_and_cuts_like_the_extractor(fbank, extractor, seconds):
    y = make_clip("chord", int(seconds * SR))
    reference = extractor(y, sampling_rate=SR, return_tensors="np")["input_values"][0]
    with torch.inference_mode():
        ours = ast_input_from_fbank(fbank(torch.from_numpy(y)), window_frames=1024).T.numpy()
    assert ours.shape == reference.shape == (1024, 128)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=NORM_ATOL)
    if seconds < 10:  # padding is 0 in log units, normalised afterwards
        np.testing.assert_allclose(ours[-1], -AST_NORM_MEAN / (2 * AST_NORM_STD), rtol=1e-6)


def test_fbank_batch_equals_singles(fbank):
    waves = torch.stack([torch.from_numpy(make_clip(k, 16000, seed=i)) for i, k in enumerate(["tone", "noise"])])
    batch = torch.stack([waves, 0.5 * waves])  # (2, 2, samples): leading dims are flattened and restored
    with torch.inference_mode():
        out = fbank(batch)
        singles = torch.stack([torch.stack([fbank(w) for w in row]) for row in batch])
    assert out.shape == (2, 2, 128, n_fbank_frames(16000)) == (2, 2, 128, 98)
    torch.testing.assert_close(out, singles, rtol=0, atol=1e-5)


def test_frame_count_and_too_short_input(fbank):
    assert [n_fbank_frames(n) for n in (0, 399, 400, 559, 560, N_1024)] == [0, 0, 1, 1, 2, 1024]
    assert fbank(torch.zeros(400)).shape == (128, 1)
    with pytest.raises(ValueError, match="at least one frame"):
        fbank(torch.zeros(3, 399))


def test_power_hook_sees_the_power_spectrogram(fbank):
    seen = []

    def hook(power: torch.Tensor) -> torch.Tensor:
        seen.append(power.shape)
        return 4.0 * power

    y = torch.from_numpy(make_clip("noise", 8000))
    plain = fbank(y)
    hooked = KaldiFbank(power_hook=hook)(y)
    assert seen == [(1, 257, n_fbank_frames(8000))]
    above_floor = plain > np.log(FBANK_LOG_FLOOR) + 1
    torch.testing.assert_close(hooked[above_floor], plain[above_floor] + np.log(4.0), rtol=0, atol=1e-5)


# --- model ---------------------------------------------------------------------------------------------------------


def test_default_config_is_the_audioset_geometry():
    config = ASTConfig()
    assert config.patch_grid == (12, 101) and config.n_patches == 1212
    assert config.input_shape == (128, 1024) and config.n_classes == 527
    with torch.device("meta"):
        n_params = sum(p.numel() for p in ASTClassifier(config).parameters())
    assert 86.5e6 < n_params < 86.7e6
    for bad in (dict(dim=100, heads=12), dict(window_frames=8), dict(time_stride=0), dict(n_classes=0)):
        with pytest.raises(ConfigError):
            ASTConfig(**bad)


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_logits_match_transformers(hf_checkpoint, attn_implementation):
    model, path = hf_checkpoint
    model.set_attn_implementation(attn_implementation)
    config, labels = ast_config_from_transformers(json.loads((path / "config.json").read_text()))
    assert labels == tuple(f"class {i}" for i in range(5))
    assert config.input_shape == (128, 100) and config.n_patches == 12 * 8
    ours = ASTClassifier(config).eval()
    ours.load_state_dict(ast_state_dict_from_transformers(load_file(str(path / "model.safetensors"))))

    windows = torch.randn(3, 128, 100, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        reference = model(input_values=windows.transpose(1, 2)).logits  # transformers wants (batch, frames, mel)
        logits = ours(windows)
    assert logits.shape == (3, 5)
    assert (logits - reference).abs().max() <= 1e-4


def test_load_transformers_ast_and_in_memory_names(hf_checkpoint):
    model, path = hf_checkpoint
    loaded, labels = load_transformers_ast(path)
    assert not loaded.training and len(labels) == loaded.config.n_classes == 5
    direct = ASTClassifier(loaded.config)
    direct.load_state_dict(ast_state_dict_from_transformers(model.state_dict()))  # transformers 5's module names
    for name, tensor in loaded.state_dict().items():
        torch.testing.assert_close(tensor, direct.state_dict()[name], rtol=0, atol=0)


def test_state_dict_mapping_is_strict(hf_checkpoint):
    _, path = hf_checkpoint
    state = load_file(str(path / "model.safetensors"))
    with pytest.raises(BundleError, match=r"unknown tensor name\(s\) \['audio_spectrogram_transformer.pooler.w'\]"):
        ast_state_dict_from_transformers({**state, "audio_spectrogram_transformer.pooler.w": torch.zeros(1)})
    missing = dict(state)
    del missing["audio_spectrogram_transformer.encoder.layer.1.output.dense.bias"]
    with pytest.raises(BundleError, match=r"missing tensor\(s\) \['blocks.1.mlp.2.bias'\]"):
        ast_state_dict_from_transformers(missing)


def test_config_import_rejects_what_the_port_does_not_implement(hf_checkpoint):
    _, path = hf_checkpoint
    config = json.loads((path / "config.json").read_text())
    with pytest.raises(BundleError, match="model_type"):
        ast_config_from_transformers({**config, "model_type": "vit"})
    with pytest.raises(BundleError, match="hidden_act"):
        ast_config_from_transformers({**config, "hidden_act": "relu"})
    with pytest.raises(BundleError, match="id2label"):
        ast_config_from_transformers({k: v for k, v in config.items() if k != "id2label"})
    with pytest.raises(BundleError, match="valid AST"):
        ast_config_from_transformers({**config, "hidden_size": 65})
