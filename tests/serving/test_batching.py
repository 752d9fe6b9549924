"""Dynamic batching of the model deployment, without timing luck.

``GenreModel`` runs alone behind a Serve handle with ``max_batch_size`` = the number of concurrent calls and
a batch wait far longer than the calls take to arrive: Serve must hand all of them to one
``_predict_batch`` call (a batch fires early only when it is full). The end-to-end load test in
``test_app.py`` cannot assert this without hoping that two HTTP requests happen to meet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import write_audio
from tests.serving.conftest import _free_port, _no_cpu

pytestmark = pytest.mark.ray

# Four files of different lengths and tones: different window counts and different predictions.
SECONDS = (2.0, 3.0, 5.5, 9.0)
FREQUENCIES_HZ = (110.0, 440.0, 1760.0, 5000.0)
WAIT_S = 30.0  # the batch wait: a batch that is not full fires only after this, which the assertions catch


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, tiny_bundle: str) -> list[Any]:
    """The four files featurized exactly as the ingress does (``ExcerptFeaturizer`` on the service's bundle)."""
    from acousticsense import ExcerptFeaturizer
    from serving.config import load_service_bundle, parse_args

    bundle = load_service_bundle(parse_args({"bundle_uri": tiny_bundle}))
    featurize = ExcerptFeaturizer(bundle.features, torch_threads=1, labels=bundle.genres)
    folder = tmp_path_factory.mktemp("batching")
    out = []
    for i, (seconds, hz) in enumerate(zip(SECONDS, FREQUENCIES_HZ)):
        path = Path(folder) / f"tone{i}.wav"
        write_audio(path, seconds, frequency_hz=hz, seed=i)
        out.append(featurize(str(path)))
    assert len({f.windows.shape[0] for f in out}) == len(out), "the files must differ in window count"
    return out


@pytest.fixture(scope="module")
def model(local_ray, tiny_bundle: str):
    """A handle to ``GenreModel`` alone (no HTTP route), batching exactly ``len(SECONDS)`` files."""
    from ray import serve

    from serving.config import load_service_bundle, parse_args
    from serving.model import GenreModel

    args = parse_args({"bundle_uri": tiny_bundle, "max_batch_size": len(SECONDS), "batch_wait_timeout_s": WAIT_S})
    serve.start(http_options={"host": "127.0.0.1", "port": _free_port()})
    deployment = GenreModel.options(**_no_cpu(max_ongoing_requests=16))
    handle = serve.run(
        deployment.bind(load_service_bundle(args), args.model_dump()), name="batching", route_prefix=None
    )
    try:
        yield handle
    finally:
        serve.shutdown()


def _classify_concurrently(model, files: list[Any]) -> list[Any]:
    responses = [model.classify.remote(f) for f in files]  # all in flight before any result is read
    return [r.result(timeout_s=2 * WAIT_S) for r in responses]


def test_concurrent_calls_share_one_forward_pass_and_each_gets_its_own_result(model, files):
    results = _classify_concurrently(model, files)
    total_windows = sum(f.windows.shape[0] for f in files)
    for file, result in zip(files, results, strict=True):
        assert (result.batch_files, result.batch_windows) == (len(files), total_windows)
        # The file's inference_s is its share of the batch's forward passes, as the batch job reports it.
        share = result.batch_inference_s * file.windows.shape[0] / total_windows
        assert result.record.inference_s == pytest.approx(share)
    assert len({r.batch_inference_s for r in results}) == 1  # the forward passes were timed once, for all

    # Results go back to their callers: the same files in the reverse order, again one batch, give each
    # file the probabilities it got before (the files' predictions differ, so a mix-up would show).
    probabilities = [r.record.probabilities for r in results]
    assert min(np.abs(a - b).max() for i, a in enumerate(probabilities) for b in probabilities[i + 1 :]) > 1e-4
    reversed_results = _classify_concurrently(model, files[::-1])[::-1]
    for before, again in zip(probabilities, reversed_results, strict=True):
        assert again.batch_files == len(files)
        np.testing.assert_allclose(again.record.probabilities, before, atol=1e-5)
