"""The real models through the real job and the real service: musicnn (the default) and a converted AST.

One local Ray for the module. The batch job runs the default bundle with every option on (rules,
enhancement, segments, cache) over good and bad files; the service answers the same bytes with the
same tags; a transformers-format AST checkpoint, converted, runs through the job unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from acousticsense import DEFAULT_BUNDLE, load_bundle
from acousticsense.convert.__main__ import main as convert
from tests.conftest import write_audio, write_small_ast
from tests.serving.conftest import _free_port, _no_cpu, post_audio

pytestmark = [pytest.mark.ray, pytest.mark.slow]

OPTIONS = {"rules": True, "enhance": "both", "segments": 2, "excerpt_s": 10.0}
GOOD = {"tone.wav": (8.0, 22050, 1), "stereo.flac": (25.0, 44100, 2), "song.mp3": (5.0, 44100, 2)}
LONG = "stereo.flac"  # long enough for two segments; the short ones are analysed whole, as one


@pytest.fixture(scope="module")
def music(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("real-model-music")
    for i, (name, (seconds, sr, channels)) in enumerate(GOOD.items()):
        write_audio(root / name, seconds, sr, channels, frequency_hz=220.0 * (i + 1), seed=i)
    (root / "broken.ogg").write_bytes(b"OggS" + b"\0" * 100)
    nan = np.full(22050 * 3, np.nan, np.float32)
    sf.write(root / "nan.wav", nan, 22050, subtype="FLOAT")  # with --rules this used to fail the whole block
    return root


def _run(music: Path, output: Path, **options):
    from pipelines.classify import JobOptions, run_classification

    summary = run_classification(JobOptions(inputs=[str(music)], output=str(output), **options), progress=False)
    return summary, {Path(r["path"]).name: r for r in pq.read_table(output).to_pylist()}


@pytest.fixture(scope="module")
def default_job(local_ray, music, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("default-job")
    return _run(music, tmp / "predictions", cache=str(tmp / "cache"), files_per_batch=2, **OPTIONS)


def test_default_job_uses_musicnn_and_writes_tags_with_every_option_on(default_job):
    summary, rows = default_job
    bundle = load_bundle(None, weights=False)
    assert summary.model_version == bundle.version == f"{DEFAULT_BUNDLE}-0.1.0"
    assert set(rows) == set(GOOD) | {"broken.ogg", "nan.wav"} and summary.missing_rows == 0
    assert (rows["nan.wav"]["status"], rows["nan.wav"]["error_stage"]) == ("error", "decode")
    assert "non-finite" in rows["nan.wav"]["error"]
    assert (rows["broken.ogg"]["status"], rows["broken.ogg"]["error_stage"], rows["broken.ogg"]["tags"]) == (
        "error",
        "decode",
        None,
    )
    for name in GOOD:
        row = rows[name]
        assert row["status"] == "ok", row["error"]
        assert row["top_genre"] in bundle.genres and len(row["probabilities"]) == len(bundle.genres)
        assert sum(row["probabilities"]) == pytest.approx(1.0, abs=1e-4)
        assert row["segments"] == (2 if name == LONG else 1)
        scores = [t["score"] for t in row["tags"]]
        assert [t["tag"] for t in row["tags"]] != list(bundle.labels)  # ranked, not in label order
        assert sorted(t["tag"] for t in row["tags"]) == sorted(bundle.labels) and scores == sorted(scores)[::-1]
        assert all(0.0 < s < 1.0 for s in scores)
    assert summary.top_tags and set(summary.top_tags) <= set(bundle.labels)
    assert "top tags" in summary.table()


def test_a_rerun_from_the_cache_gives_the_same_tags(default_job, local_ray, music, tmp_path):
    summary, rows = default_job
    cache = Path(summary.output).parent / "cache"
    _, again = _run(music, tmp_path / "again", cache=str(cache), files_per_batch=2, **OPTIONS)
    for name in GOOD:
        assert [t["tag"] for t in again[name]["tags"][:5]] == [t["tag"] for t in rows[name]["tags"][:5]]
        np.testing.assert_allclose(again[name]["probabilities"], rows[name]["probabilities"], atol=1e-6)


def test_the_service_answers_the_same_bytes_with_the_same_tags(default_job, local_ray, music):
    from ray import serve

    from serving.app import build_app

    _, rows = default_job
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    args = {**OPTIONS, "ingress_options": _no_cpu(), "model_options": _no_cpu()}
    serve.run(build_app(args), name="real", route_prefix="/")
    try:
        for name, content_type in (("tone.wav", "audio/wav"), ("song.mp3", "audio/mpeg")):
            status, _, online = post_audio(port, (music / name).read_bytes(), content_type)
            assert status == 200, online
            row = rows[name]
            assert online["top_genre"] == row["top_genre"]
            assert [t["tag"] for t in online["tags"][:10]] == [t["tag"] for t in row["tags"][:10]]
            np.testing.assert_allclose(
                [t["score"] for t in online["tags"]], [t["score"] for t in row["tags"]], atol=1e-4
            )
            np.testing.assert_allclose(list(online["probabilities"].values()), row["probabilities"], atol=1e-4)
        status, _, info = post_audio(port, b"", "audio/wav")
        assert status == 400
    finally:
        serve.delete("real")


def test_a_converted_ast_checkpoint_runs_through_the_job_unchanged(local_ray, music, tmp_path):
    pytest.importorskip("transformers")
    labels = ["Music", "Speech", "Rock music", "Jazz", "Classical music", "Techno"]
    write_small_ast(tmp_path / "hf", labels, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=64, max_length=200)  # fmt: skip
    assert convert(["ast", str(tmp_path / "hf"), "--output", str(tmp_path / "ast")]) == 0
    summary, rows = _run(music, tmp_path / "predictions", model=str(tmp_path / "ast"), **OPTIONS)
    assert summary.ok == len(GOOD) and summary.errors == 2
    bundle = load_bundle(str(tmp_path / "ast"), weights=False).with_overrides(**OPTIONS)
    assert bundle.genres == ("Classical", "Electronic", "Jazz", "Rock")
    for name in GOOD:
        row = rows[name]
        assert row["top_genre"] in bundle.genres and len(row["tags"]) == len(labels)
        assert row["windows"] >= row["segments"] == (2 if name == LONG else 1)
        assert row["feature_hash"] == bundle.feature_hash
