"""The model deployment: the bundle's classifier behind ``@serve.batch``, windows of many requests per forward.

It computes exactly what the batch job's ``ClassifyWindows`` stage computes: the same bundle with the
same overrides (resolved once by ``build_app``), ``logits_per_file`` over the windows of several files,
then ``predict_file`` per file with its segment layout and rule-layer weights.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ray import serve

from acousticsense import FeaturizedAudio, FileRecord, ModelBundle, WindowPredictor, logits_per_file, predict_file
from serving.config import parse_args

__all__ = ["GenreModel", "ModelResult"]


@dataclass(frozen=True)
class ModelResult:
    """One file's record with its prediction, and the dynamic batch it was computed in.

    Attributes:
        record: the file's record from the featurizer, with the prediction, the bundle that made it
            (``model_version`` / ``feature_hash``) and ``inference_s``, the file's share of the batch's
            forward passes (its windows / the batch's windows), as the batch job computes it.
        batch_files / batch_windows: how many files and windows shared those forward passes.
        batch_inference_s: the wall time of those forward passes.
    """

    record: FileRecord
    batch_files: int
    batch_windows: int
    batch_inference_s: float


@serve.deployment(
    name="GenreModel",
    max_ongoing_requests=32,
    max_queued_requests=64,
    autoscaling_config={
        "min_replicas": 1,
        "max_replicas": 2,
        "target_ongoing_requests": 8,
        "upscale_delay_s": 5.0,
        "downscale_delay_s": 60.0,
    },
    ray_actor_options={"num_cpus": 0.5},
)
class GenreModel:
    """Windows in, :class:`ModelResult` out; dynamic batching across concurrent requests.

    Args:
        bundle: the bundle as ``build_app`` resolved it (configs with the overrides); its weights are read here.
        args: :class:`serving.config.AppArgs` as a dict (device, precision, batch sizes, storage options).
    """

    def __init__(self, bundle: ModelBundle, args: dict[str, Any]) -> None:
        self.args = parse_args(args)
        torch.set_num_threads(self.args.torch_threads)
        self.bundle = bundle.with_weights(self.args.storage_options)
        self.predictor = WindowPredictor(
            self.bundle.build_model(),
            device=self.args.device,
            precision=self.args.precision,
            compile=self.args.compile,
            max_batch_windows=self.args.max_batch_windows,
            copy_model=False,  # built here for this predictor alone
        )
        features = self.bundle.features
        self.window_shape = (features.n_mels, features.window_frames)
        self.feature_hash = self.bundle.feature_hash
        self._predict_batch.set_max_batch_size(self.args.max_batch_size)
        self._predict_batch.set_batch_wait_timeout_s(self.args.batch_wait_timeout_s)
        # One forward at start-up, so that lazy initialisation (and torch.compile) is not a user's latency.
        self.predictor.predict_logits(np.zeros((1, *self.window_shape), np.float16))

    def ready(self) -> dict[str, str]:
        """Answer once the replica is constructed: the bundle it serves, and where it runs."""
        return {
            "model_version": self.bundle.version,
            "feature_hash": self.feature_hash,
            "device": str(self.predictor.device),
            "precision": self.predictor.precision,
        }

    async def classify(self, file: FeaturizedAudio) -> ModelResult:
        """One featurized file (windows, segment layout, rule weights from ``ExcerptFeaturizer``) -> its prediction."""
        self._check(file)
        result = await self._predict_batch(file)
        if isinstance(result, Exception):
            raise result
        return result

    async def classify_many(self, files: list[FeaturizedAudio]) -> list[ModelResult | str]:
        """Several featurized files at once; they share batches with other requests too.

        Returns:
            one :class:`ModelResult` per file, or the error message of a file whose inference failed.
        """
        for file in files:
            self._check(file)
        results = await asyncio.gather(*(self._predict_batch(f) for f in files))
        return [f"inference failed: {r}" if isinstance(r, Exception) else r for r in results]

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def _predict_batch(self, files: list[FeaturizedAudio]) -> list[ModelResult | Exception]:
        """The windows of several requests in shared forward passes; one result per input, in order.

        Serve collects concurrent ``_predict_batch(file)`` calls into ``files``; their window arrays go
        through ``logits_per_file`` together, as the batch job's ``ClassifyWindows`` does with a block's files.
        """
        windows_per_file = [f.windows for f in files]
        started = time.perf_counter()
        # A thread keeps the replica's event loop free (health checks, batch assembly) during the forward;
        # a file that breaks the shared batch gets its own error, as in the batch job.
        logits = await asyncio.to_thread(logits_per_file, self.predictor, windows_per_file)
        inference_s = time.perf_counter() - started
        n_windows = sum(w.shape[0] for w in windows_per_file)
        results: list[ModelResult | Exception] = []
        for file, file_logits in zip(files, logits):
            if isinstance(file_logits, Exception):
                results.append(file_logits)
                continue
            prediction = predict_file(
                file_logits, self.bundle.output_head, self.bundle.postprocess, file.segment_windows, file.class_weights
            )
            record = file.record.predicted(
                prediction,
                model_version=self.bundle.version,
                feature_hash=self.feature_hash,
                inference_s=inference_s * file.windows.shape[0] / n_windows,
            )
            results.append(ModelResult(record, len(files), n_windows, batch_inference_s=inference_s))
        return results

    def _check(self, file: FeaturizedAudio) -> None:
        windows, segment_windows = file.windows, file.segment_windows
        if windows.ndim != 3 or windows.shape[0] < 1 or tuple(windows.shape[1:]) != self.window_shape:
            raise ValueError(
                f"windows must be (n >= 1, {self.window_shape[0]}, {self.window_shape[1]}), got {windows.shape}"
            )
        if segment_windows and sum(segment_windows) != windows.shape[0]:
            raise ValueError(f"segment_windows {segment_windows} do not add up to {windows.shape[0]} windows")
