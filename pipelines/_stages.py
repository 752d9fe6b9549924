"""Callable classes that Ray Data runs on actor pools; each wraps core callables and never raises per file.

A per-file exception becomes ``status='error'`` with ``error`` and ``error_stage``, so one bad file
never fails a block and every input file leaves exactly one row.

The driver resolves the bundle's configs and the job's overrides once (``load_bundle(..., weights=False,
overrides=...)``) and hands that :class:`ModelBundle` to every stage, so all actors featurize and postprocess
with one config; only the stages that run the model read its weights (``ModelBundle.with_weights``).

The driver imports this module for the class objects only (Ray pickles them by reference), so torch and
the torch side of the core are imported where they run: in the actors' constructors and methods.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from acousticsense import AcousticSenseError, FileRecord, StageError, is_remote, open_binary
from acousticsense.record import AUDIO
from pipelines._metrics import metrics, observe_stages
from pipelines._schema import (
    FEATURES_SCHEMA,
    OUTPUT_SCHEMA,
    PAYLOAD_FIELDS,
    WINDOW_LOGITS_FIELD,
    parquet_row,
    record_of,
)

if TYPE_CHECKING:
    from acousticsense import FeaturizedAudio, ModelBundle, PreparedAudio

logger = logging.getLogger(__name__)

_PAYLOAD_COLUMNS = tuple(name for name, _ in PAYLOAD_FIELDS)


class FeaturizeFiles:
    """CPU stage: path -> float16 model windows (or an error row).

    With ``features_on="accelerator"`` it stops after resampling and ships the mono excerpts instead,
    for the accelerator stage to turn into windows. With a ``cache_uri``, windows of unchanged files are
    read from the spectrogram cache instead of being computed.
    """

    def __init__(
        self,
        bundle: ModelBundle,
        storage_options: Mapping[str, Any],
        features_on: str = "cpu",
        cache_uri: str | None = None,
    ) -> None:
        from acousticsense import ExcerptFeaturizer, SpectrogramCache

        self.storage_options = dict(storage_options)
        self.bundle = bundle  # configs only: this stage never runs the model
        self.features_on = features_on
        # One thread: the pool already has one actor per core.
        self.featurize = ExcerptFeaturizer(self.bundle.features, torch_threads=1, labels=self.bundle.genres)
        self.cache = SpectrogramCache(cache_uri, self.bundle.feature_hash, storage_options) if cache_uri else None

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = [
            self._one(path, list_error)
            for path, list_error in zip(batch.column("path").to_pylist(), batch.column("list_error").to_pylist())
        ]
        for row in rows:
            observe_stages({stage: row.get(f"{stage}_s") for stage in ("read", "decode", "resample", "features")})
        return pa.Table.from_pylist(rows, schema=FEATURES_SCHEMA)

    def _one(self, path: str, list_error: str | None) -> dict[str, Any]:
        from acousticsense import FeaturizedAudio, PreparedAudio

        row: dict[str, Any] = {"path": path, "status": "error"}
        if list_error:
            return row | {"error": list_error, "error_stage": "list"}
        t0 = time.perf_counter()
        try:
            source = self._open(path)
        except Exception as e:  # noqa: BLE001 - any storage failure is this file's read error
            return row | {"error": f"cannot read {path!r}: {type(e).__name__}: {e}", "error_stage": "read"}
        read_s = time.perf_counter() - t0
        key, cached = self._cached(path)
        try:
            if cached is not None:
                result: FeaturizedAudio | PreparedAudio = cached
            elif self.features_on == "accelerator":
                result = self.featurize.prepare(source)
            else:
                result = self.featurize(source)
        except StageError as e:
            return row | {"error": str(e), "error_stage": e.stage, "read_s": read_s}
        finally:
            if not isinstance(source, str):
                source.close()
        if key is not None and cached is None and isinstance(result, FeaturizedAudio):
            self._store(key, result)
        row |= parquet_row(replace(result.record, read_s=read_s), AUDIO) | {
            "status": "ok",
            "cache_hit": cached is not None,
            "class_weights": None if result.class_weights is None else result.class_weights.tolist(),
        }
        if isinstance(result, PreparedAudio):
            return row | {
                "waveform": b"".join(np.ascontiguousarray(w, dtype=np.float32).tobytes() for w in result.segments),
                "segment_samples": [len(w) for w in result.segments],
            }
        return row | {"features": result.windows.tobytes(), "segment_windows": result.segment_windows}

    def _cached(self, path: str) -> tuple[str | None, FeaturizedAudio | None]:
        if self.cache is None:
            return None, None
        try:
            key = self.cache.key(path)
        except Exception as e:  # noqa: BLE001 - a cache problem must never fail the file
            logger.warning("spectrogram cache: no key for %s: %s", path, e)
            return None, None
        return key, self.cache.get(key)

    def _store(self, key: str, result: FeaturizedAudio) -> None:
        try:
            self.cache.put(key, result)  # type: ignore[union-attr]
        except Exception as e:  # noqa: BLE001
            logger.warning("spectrogram cache: cannot store %s: %s", key, e)

    def _open(self, path: str) -> Any:
        if is_remote(path):
            return open_binary(path, self.storage_options)  # ranged reads: only the excerpt's bytes travel
        mode = os.stat(path).st_mode  # missing or unreadable is a 'read' error, not a decode error
        if not stat.S_ISREG(mode):
            # A FIFO would block the decoder (and the actor) forever, a device could stream without end, a
            # symlink to a folder is no audio: only regular files are opened.
            raise OSError(f"not a regular file ({_file_kind(mode)})")
        if not os.access(path, os.R_OK):
            raise PermissionError(f"permission denied: {path}")
        return path  # decoders open local paths themselves, which is faster than a Python file object


def _file_kind(mode: int) -> str:
    """What a non-regular file is, for its error row."""
    kinds = {
        stat.S_ISDIR: "a folder",
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISSOCK: "a socket",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
    }
    return next((name for test, name in kinds.items() if test(mode)), "not a file")


class ClassifyWindows:
    """Accelerator stage: windows of many files in shared batches -> one prediction row per file."""

    def __init__(
        self,
        bundle: ModelBundle,
        storage_options: Mapping[str, Any],
        device: str = "auto",
        precision: str = "auto",
        compile: bool = False,
        max_batch_windows: int = 256,
        torch_threads: int = 1,
        keep_window_logits: bool = False,
    ) -> None:
        import ray
        import torch

        from acousticsense import WindowPredictor, front_end

        self.schema = OUTPUT_SCHEMA.append(WINDOW_LOGITS_FIELD) if keep_window_logits else OUTPUT_SCHEMA
        torch.set_num_threads(max(1, torch_threads))
        if ray.get_gpu_ids() and not torch.cuda.is_available():
            logger.warning("this actor holds a GPU but torch sees no CUDA device; inference runs on the CPU")
        self.bundle = bundle.with_weights(storage_options)
        self.predictor = WindowPredictor(
            self.bundle.build_model(),
            device=device,
            precision=precision,  # type: ignore[arg-type]
            compile=compile,
            max_batch_windows=max_batch_windows,
            copy_model=False,  # built here for this predictor alone
        )
        self.feature_hash = self.bundle.feature_hash
        features = self.bundle.features
        self.window_shape = (features.n_mels, features.window_frames)
        # Built here whatever the placement: rows from the CPU stage may carry waveforms (--features-on
        # accelerator) and cached windows side by side.
        self.log_mel = front_end(features).to(self.predictor.device)

    def __call__(self, batch: pa.Table) -> pa.Table:
        import torch

        from acousticsense import logits_per_file, predict_file

        payload = list(_PAYLOAD_COLUMNS)
        rows = batch.drop_columns(payload).to_pylist()
        columns = {name: batch.column(name).to_pylist() for name in payload}
        segment_windows = columns["segment_windows"]
        ok: list[int] = []
        windows: list[np.ndarray] = []
        records: list[FileRecord] = []
        for i, row in enumerate(rows):
            if row["status"] != "ok":
                continue
            record = record_of(row, AUDIO)
            if columns["features"][i] is not None:
                file_windows = np.frombuffer(columns["features"][i], dtype=np.float16).reshape(-1, *self.window_shape)
            else:
                try:
                    file_windows, segment_windows[i], features_s = self._featurize_here(
                        columns["waveform"][i], columns["segment_samples"][i]
                    )
                except StageError as e:
                    row.update(status="error", error=str(e), error_stage=e.stage)
                    continue
                record = replace(record, windows=int(file_windows.shape[0]), features_s=features_s)
            ok.append(i)
            windows.append(file_windows)
            records.append(record)
        on_gpu = self.predictor.device.type == "cuda"
        if on_gpu:
            torch.cuda.reset_peak_memory_stats(self.predictor.device)
        t0 = time.perf_counter()
        logits = logits_per_file(self.predictor, windows)
        seconds_per_window = (time.perf_counter() - t0) / max(1, sum(w.shape[0] for w in windows))
        if on_gpu:  # weights + this call's batches: what --max-batch-windows costs on this GPU
            metrics()["gpu_peak_memory"].set(torch.cuda.max_memory_allocated(self.predictor.device))
        now = datetime.now(timezone.utc)
        head = self.bundle.output_head
        for i, record, file_logits in zip(ok, records, logits):
            row = rows[i]
            if isinstance(file_logits, Exception):
                failed = {"status": "error", "error": f"inference failed: {file_logits}", "error_stage": "inference"}
                row.update(parquet_row(record) | failed)
                continue
            weights = columns["class_weights"][i]
            prediction = predict_file(
                file_logits,
                head,
                self.bundle.postprocess,
                segment_windows[i],
                None if weights is None else np.asarray(weights, np.float32),
            )
            record = record.predicted(
                prediction,
                model_version=self.bundle.version,
                feature_hash=self.feature_hash,
                inference_s=seconds_per_window * record.windows,
            )
            row.update(parquet_row(record))
            if "window_logits" in self.schema.names:
                row["window_logits"] = file_logits.tolist()
        for row in rows:
            row.update(model_version=self.bundle.version, feature_hash=self.feature_hash, processed_at=now)
        self._record(rows, sum(w.shape[0] for w in windows))
        return pa.Table.from_pylist(rows, schema=self.schema)

    @staticmethod
    def _record(rows: list[dict[str, Any]], n_windows: int) -> None:
        m = metrics()
        m["batch_windows"].observe(n_windows)
        m["queue_files"].set(len(rows))
        for row in rows:
            m["files"].inc(tags={"status": row["status"], "stage": row.get("error_stage") or "none"})
            if row["status"] == "ok":
                m["predictions"].inc(tags={"genre": row["top_genre"]})
                m["audio_seconds"].inc(row["duration_s"])
                m["windows"].inc(row["windows"])
                observe_stages({"inference": row["inference_s"]})

    def _featurize_here(self, waveform: bytes, samples: list[int]) -> tuple[np.ndarray, list[int], float]:
        """STFT + mel on this actor's device for a file whose CPU stage stopped after resampling.

        Returns:
            the file's windows, the windows per segment, and the seconds it took (the file's ``features_s``).
        """
        import torch

        from acousticsense import segment_windows

        t0 = time.perf_counter()
        mono = torch.from_numpy(np.frombuffer(waveform, dtype=np.float32).copy())
        segments = list(torch.split(mono, samples))
        file_windows, per_segment = segment_windows(segments, self.log_mel)
        return file_windows, per_segment, time.perf_counter() - t0


class FeaturizeAndClassify:
    """Both stages in one actor, for clusters without accelerators.

    There inference is just more CPU work: two pools would need a guessed split of the cores between
    them and would ship every file's windows through the object store. One pool of these balances
    itself, and a file's windows never leave the process that computed them.
    """

    def __init__(
        self,
        bundle: ModelBundle,
        storage_options: Mapping[str, Any],
        features_on: str = "cpu",
        cache_uri: str | None = None,
        **classify_kwargs: Any,
    ) -> None:
        self.featurize = FeaturizeFiles(bundle, storage_options, features_on, cache_uri)
        self.classify = ClassifyWindows(bundle, storage_options, **classify_kwargs)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.classify(self.featurize(batch))


__all__ = [
    "AcousticSenseError",
    "ClassifyWindows",
    "FeaturizeAndClassify",
    "FeaturizeFiles",
]
