"""python -m acousticsense.convert: musicnn's wheel and transformers AST folders -> bundles that run unchanged."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from acousticsense import BundleError, load_bundle, resolve_bundle_uri
from acousticsense.convert.__main__ import main as convert
from acousticsense.convert.musicnn import MUSICNN_WHEEL_SHA256, convert_musicnn, download_wheel
from acousticsense.convert.tf_checkpoint import read_checkpoint, read_index
from acousticsense.extract import ExcerptFeaturizer
from tests.conftest import write_small_ast

SHIPPED = ("musicnn-msd", "musicnn-mtt", "musicnn-msd-mtt")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """musicnn 0.1.0 from PyPI (the index this project installs from; ~29 MB)."""
    return download_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.mark.slow
def test_musicnn_conversion_reproduces_the_shipped_bundles(wheel, tmp_path):
    assert _sha256(wheel) == MUSICNN_WHEEL_SHA256
    assert convert(["musicnn", "--wheel", str(wheel), "--output-dir", str(tmp_path)]) == 0
    for name in SHIPPED:
        for file in ("model.safetensors", "bundle.json", "LICENSE.musicnn.md"):
            assert _sha256(tmp_path / name / file) == _sha256(Path(resolve_bundle_uri(name)) / file), (name, file)


@pytest.mark.slow
def test_checkpoint_reader_keeps_parameters_and_statistics_only(wheel, tmp_path):
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(tmp_path)
    prefix = f"{tmp_path / 'musicnn' / 'MSD_musicnn'}/"
    n_shards, entries = read_index(prefix)
    kept = {name for name in entries if "Adam" not in name and "_power" not in name}
    assert (n_shards, len(entries), len(kept)) == (1, 150, 64)
    tensors = read_checkpoint(prefix, kept)
    assert sum(t.size for t in tensors.values()) == 792_079
    state = load_bundle("musicnn-msd").state_dict
    np.testing.assert_array_equal(state["networks.0.dense.weight"].numpy(), tensors["dense/kernel"].T)


@pytest.mark.slow
def test_a_tampered_wheel_is_refused(wheel, tmp_path):
    copy = tmp_path / wheel.name
    copy.write_bytes(wheel.read_bytes() + b"\0")
    with pytest.raises(BundleError, match="sha256"):
        convert_musicnn(copy, tmp_path / "out")


def test_reader_refuses_what_is_not_a_checkpoint(tmp_path):
    (tmp_path / "x.index").write_bytes(b"not a table" * 10)
    with pytest.raises(BundleError, match="not a TensorFlow checkpoint"):
        read_index(tmp_path / "x")
    with pytest.raises(BundleError, match="cannot read"):
        read_index(tmp_path / "missing")


# --- AST -------------------------------------------------------------------------------------------------------

transformers = pytest.importorskip("transformers")
AUDIOSET_LIKE = ["Speech", "Music", "Rock music", "Heavy metal", "Jazz", "Classical music", "Opera", "Techno"]


@pytest.fixture(scope="module")
def ast_checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hf") / "ast-small"
    write_small_ast(folder, AUDIOSET_LIKE, noise=0.02)
    return folder


def test_ast_checkpoint_converts_to_a_bundle_with_the_same_features_and_logits(ast_checkpoint, tmp_path):
    out = tmp_path / "ast-bundle"
    assert convert(["ast", str(ast_checkpoint), "--output", str(out)]) == 0
    bundle = load_bundle(str(out))
    assert bundle.model.family == "ast" and bundle.head.activation == "sigmoid"  # AudioSet labels: multi-label
    assert set(bundle.genres) == {"Rock", "Metal", "Jazz", "Classical", "Electronic"}
    assert bundle.head.genres["Classical"] == ("Classical music", "Opera")

    # The job's featurizer on a file of exactly one window gives what ASTFeatureExtractor gives.
    samples = 400 + (bundle.features.window_frames - 1) * 160
    rng = np.random.default_rng(0)
    t = np.arange(samples) / 16000
    clip = (0.3 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(samples)).astype(np.float32)
    path = tmp_path / "clip.wav"
    sf.write(path, clip, 16000, subtype="FLOAT")
    featurized = ExcerptFeaturizer(bundle.features)(str(path))
    assert featurized.windows.shape == (1, 128, bundle.features.window_frames)
    extractor = transformers.ASTFeatureExtractor(max_length=bundle.features.window_frames)
    expected = extractor(clip, sampling_rate=16000, return_tensors="np")["input_values"][0].T
    np.testing.assert_allclose(featurized.windows[0].astype(np.float32), expected, atol=5e-3, rtol=0)  # float16

    reference = transformers.ASTForAudioClassification.from_pretrained(ast_checkpoint).eval()
    inputs = torch.from_numpy(expected.T[None].astype(np.float32))
    with torch.inference_mode():
        torch.testing.assert_close(
            bundle.build_model()(inputs.transpose(1, 2)), reference(inputs).logits, atol=1e-4, rtol=0
        )


def test_ast_without_audioset_labels_is_a_single_label_model(ast_checkpoint, tmp_path):
    import json

    folder = tmp_path / "genres-only"
    folder.mkdir()
    config = json.loads((ast_checkpoint / "config.json").read_text())
    labels = ["Blues", "Jazz", "Rock", "Pop", "Metal", "Folk", "Country", "Disco"]
    config["id2label"] = {str(i): label for i, label in enumerate(labels)}
    config["label2id"] = {label: i for i, label in enumerate(labels)}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes((ast_checkpoint / "model.safetensors").read_bytes())
    assert convert(["ast", str(folder), "--output", str(tmp_path / "b"), "--version", "gtzan-ft"]) == 0
    bundle = load_bundle(str(tmp_path / "b"), weights=False)
    assert (bundle.head.activation, bundle.head.genres, bundle.genres, bundle.version) == (
        "softmax",
        None,
        tuple(labels),
        "gtzan-ft",
    )


def test_convert_cli_reports_a_missing_checkpoint(tmp_path, capsys):
    assert convert(["ast", str(tmp_path / "nothing"), "--output", str(tmp_path / "b")]) == 2
    assert "not found" in capsys.readouterr().err


def test_convert_never_imports_transformers_at_run_time():
    import subprocess

    code = "import sys, acousticsense.convert.ast, acousticsense.bundle; print('transformers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
