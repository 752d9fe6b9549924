"""The HTTP ingress: validate the request, featurize on CPU threads, ask the model deployment, convert.

Routes (all JSON; errors are ``{"error": code, "detail": message}``):

- ``POST /v1/classify``: one audio file, raw bytes (``audio/*`` / ``application/octet-stream``) or
  multipart field ``file``; optional ``?top_k=``.
- ``POST /v1/classify/batch``: several files as multipart parts; one result (or error) per file.
- ``GET /v1/health``: 200 once a model replica answers, 503 before.
- ``GET /v1/model``: the bundle's labels, version, feature config and feature hash.
- ``GET /``: the listening page (``serving/static/index.html``: one self-contained HTML file that calls
  the routes above; nothing is loaded from elsewhere).

``POST /v1/classify?spectrogram=true`` adds ``spectrogram``: the windows the model classified, stitched
back into the analysed excerpt's log-mel in time order, pooled to at most ``SPECTROGRAM_MAX_COLUMNS``
columns and quantised to uint8 (:func:`spectrogram_body`).
"""

# No `from __future__ import annotations` here, on purpose: FastAPI resolves the routes' annotations
# from the endpoint functions' globals, and Serve freezes the app with cloudpickle, which keeps only the
# globals the code references; string annotations such as "Request" would then no longer resolve.
import asyncio
import base64
import hashlib
import io
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from importlib import resources
from typing import Any

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.config import BackpressureConfig
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle

import acousticsense
from acousticsense import (
    DEFAULT_BUNDLE,
    ExcerptFeaturizer,
    FeatureConfig,
    FeaturizedAudio,
    ModelBundle,
    StageError,
    choose_segments,
    n_frames,
)
from acousticsense import top_k as top_k_of
from serving._body import RAW_AUDIO_TYPES, is_raw_audio, media_type, read_body, read_form
from serving.config import parse_args
from serving.errors import ApiError, install_error_handlers, stage_error
from serving.model import ModelResult
from serving.schemas import BatchResponse, Classification, ErrorBody, Health, ModelInfo, response_fields

__all__ = ["ClassifierIngress", "SPECTROGRAM_MAX_COLUMNS", "api", "page_headers", "spectrogram_body", "stitch_windows"]

api = FastAPI(
    title="AcousticSense",
    version=acousticsense.__version__,
    summary="Music genre classification: the batch job's model and features behind HTTP.",
)
install_error_handlers(api)

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        400: "undecodable, empty, too short or truncated audio; malformed multipart",
        408: "the client stopped sending the body (nothing for 30 s)",
        413: "body over max_body_mb",
        415: f"Content-Type is not {RAW_AUDIO_TYPES} or multipart/form-data",
        422: "invalid query parameter (top_k)",
        431: "request headers over 32 KiB",
        503: "the model queue is full or no model replica is up (see Retry-After)",
    }.items()
}
_TOP_K = Query(default=None, ge=1, description="how many genres to list in top_k (default: the bundle's)")
_SPECTROGRAM = Query(
    default=False,
    description="also return `spectrogram`: the analysed excerpt's log-mel as the model saw it (about 60 kB of "
    "JSON for a 30 s excerpt)",
)
SPECTROGRAM_MAX_COLUMNS = 512
# The routes read their bodies themselves (streamed, size-checked, parsed by python-multipart in
# serving._body), so FastAPI cannot infer them; these make /docs show what to send.
_AUDIO_BYTES = {"schema": {"type": "string", "format": "binary"}}
_FILE_FORM = {
    "schema": {
        "type": "object",
        "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary", "description": "the audio file"}},
    }
}
_CLASSIFY_BODY = {
    "requestBody": {
        "required": True,
        "description": "the audio file: raw bytes, or multipart field `file`",
        "content": {
            "audio/*": _AUDIO_BYTES,
            "video/*": _AUDIO_BYTES,
            "application/octet-stream": _AUDIO_BYTES,
            "multipart/form-data": _FILE_FORM,
        },
    }
}
_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "description": "one part with a filename per audio file (any field name); parts without a filename are ignored",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                }
            }
        },
    }
}
_PAGE = ("serving", "static/index.html")


# Module-level helpers must be defined before the deployment class: Serve snapshots the class (and the
# globals its methods use) when it is decorated.


async def _await(response: Any) -> Any:
    return await response


def _file_error(filename: str | None, error: str, detail: str) -> dict[str, Any]:
    return {"filename": filename, "status": "error", "error": error, "detail": detail}


def stitch_windows(
    windows: np.ndarray, windows_per_segment: Sequence[int], frames_per_segment: Sequence[int]
) -> list[np.ndarray]:
    """Undo :func:`acousticsense.frame_windows` segment by segment: the spectrogram the windows were cut from.

    Args:
        windows: ``(n_windows, n_mels, window_frames)``, segments one after another (``FeaturizedAudio.windows``).
        windows_per_segment: windows of each segment, in time order (``FeaturizedAudio.segment_windows``).
        frames_per_segment: spectrogram frames of each segment (``n_frames`` of its samples).

    Returns:
        float32 ``(n_mels, frames)`` per segment: every window but the last in full, then the frames of the
        last one (aligned to the segment's end) that the others do not hold; a segment shorter than one
        window (tiled by ``frame_windows``) is its first window's first ``frames`` columns.

    Raises:
        ValueError: the counts do not describe ``windows``.
    """
    if sum(windows_per_segment) != windows.shape[0] or len(windows_per_segment) != len(frames_per_segment):
        raise ValueError(
            f"{windows.shape[0]} windows, segments of {list(windows_per_segment)} windows and "
            f"{list(frames_per_segment)} frames do not fit together"
        )
    width = windows.shape[-1]
    parts, start = [], 0
    for count, frames in zip(windows_per_segment, frames_per_segment):
        if count != max(1, -(-frames // width)):
            raise ValueError(f"a segment of {frames} frames makes {max(1, -(-frames // width))} windows, not {count}")
        own = windows[start : start + count].astype(np.float32)
        start += count
        if frames <= width:
            parts.append(own[0, :, :frames])
            continue
        tail = frames - (count - 1) * width
        parts.append(np.concatenate([*own[:-1], own[-1][:, width - tail :]], axis=1))
    return parts


def _pool_columns(part: np.ndarray, frames_per_column: int) -> np.ndarray:
    """Mean over runs of ``frames_per_column`` frames (the last run may be shorter): ``(n_mels, columns)``."""
    if frames_per_column == 1:
        return part
    starts = np.arange(0, part.shape[1], frames_per_column)
    counts = np.diff(np.append(starts, part.shape[1]))
    return np.add.reduceat(part, starts, axis=1) / counts


def spectrogram_body(
    features: FeaturizedAudio,
    frames_per_segment: Sequence[int],
    config: FeatureConfig,
    max_columns: int = SPECTROGRAM_MAX_COLUMNS,
) -> dict[str, Any]:
    """The ``spectrogram`` object of a classification (:class:`serving.schemas.Spectrogram`).

    The windows the model classified are stitched back in time order (:func:`stitch_windows`), each segment
    is mean-pooled over runs of ``frames_per_column`` frames (the smallest run that fits all segments into
    ``max_columns`` columns), and the values are quantised to 256 levels between their min and max.

    Args:
        features: the featurized file (``windows``, ``segment_windows``, ``record.duration_s``).
        frames_per_segment: spectrogram frames of each analysed segment.
        config: the feature config the windows were computed with.
        max_columns: most columns in the picture.

    Returns:
        ``shape`` ``[n_mels, columns]``, ``data`` (base64 of the uint8 matrix, row-major, row 0 the lowest
        mel band), ``min`` / ``max`` (the values of bytes 0 and 255, normalised front-end units), seconds
        and frames per column, the mel band range and scale, and each segment's offset, duration and columns.
    """
    parts = stitch_windows(features.windows, features.segment_windows, frames_per_segment)
    total = sum(frames_per_segment)
    per_column = max(1, -(-total // max_columns))
    longest = max(frames_per_segment)
    while sum(-(-f // per_column) for f in frames_per_segment) > max_columns and per_column < longest:
        per_column += 1  # (more segments than max_columns: one column each is as far as it goes)
    pooled = [_pool_columns(p, per_column) for p in parts]
    matrix = np.concatenate(pooled, axis=1)
    low, high = float(matrix.min()), float(matrix.max())
    scale = 255.0 / (high - low) if high > low else 0.0
    quantised = np.rint((matrix - low) * scale).astype(np.uint8)
    facts = features.record
    spans = choose_segments(facts.duration_s, config.excerpt_s, config.segments, config.excerpt_policy)
    if len(spans) != len(parts):  # cannot happen for the featurizer's own output; keep the picture anyway
        spans = [(facts.offset_s, facts.excerpt_s / len(parts))] * len(parts)
    return {
        "shape": [int(matrix.shape[0]), int(matrix.shape[1])],
        "data": base64.b64encode(np.ascontiguousarray(quantised).tobytes()).decode("ascii"),
        "min": low,
        "max": high,
        "front_end": config.front_end,
        "frames_per_column": per_column,
        "seconds_per_column": per_column / config.frames_per_second,
        "f_min_hz": float(config.f_min_hz),
        "f_max_hz": float(config.f_max_hz if config.f_max_hz is not None else config.sample_rate_hz / 2),
        "mel_scale": "kaldi" if config.front_end == "kaldi_fbank" else "slaney",
        "segments": [
            {"offset_s": offset, "duration_s": frames / config.frames_per_second, "columns": int(p.shape[1])}
            for (offset, _), frames, p in zip(spans, frames_per_segment, pooled)
        ],
    }


def _featurize_with_spectrogram(
    featurizer: ExcerptFeaturizer, source: io.BytesIO, max_columns: int
) -> tuple[FeaturizedAudio, dict[str, Any], float]:
    """What ``featurizer(source)`` computes (the same windows, for the model), plus :func:`spectrogram_body`
    and the seconds the picture took (the request's ``timings_ms.spectrogram``).

    ``ExcerptFeaturizer.__call__`` in its two public steps (``prepare``, ``windows_of``), so that each segment's
    length (which fixes how much the last window overlaps the one before it) is still known when the windows
    are stitched back.
    """
    prepared = featurizer.prepare(source)
    features = featurizer.windows_of(prepared)
    t1 = time.perf_counter()
    frames = [n_frames(segment.shape[-1], featurizer.config) for segment in prepared.segments]
    picture = spectrogram_body(features, frames, featurizer.config, max_columns)
    return features, picture, time.perf_counter() - t1


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode("ascii") + "'"


def page_headers(html: str) -> dict[str, str]:
    """Headers for the listening page: a Content-Security-Policy that admits exactly its own inline
    ``<script>`` and ``<style>`` blocks (by hash) and requests to this service, nothing from elsewhere."""
    scripts = " ".join(_csp_hash(s) for s in re.findall(r"<script>(.*?)</script>", html, flags=re.S)) or "'none'"
    styles = " ".join(_csp_hash(s) for s in re.findall(r"<style>(.*?)</style>", html, flags=re.S)) or "'none'"
    policy = (
        f"default-src 'none'; script-src {scripts}; style-src {styles}; "
        "connect-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


def _unsupported(media: str, accepted: str) -> ApiError:
    sent = f"Content-Type {media!r}" if media else "no Content-Type"
    return ApiError(415, "unsupported_media_type", f"{sent}; send {accepted}")


@serve.deployment(
    name="ClassifierIngress",
    max_ongoing_requests=16,
    max_queued_requests=64,
    backpressure_config=BackpressureConfig(status_code=503, retry_after_s=1),
    autoscaling_config={
        "min_replicas": 1,
        "max_replicas": 2,
        "target_ongoing_requests": 4,
        "upscale_delay_s": 5.0,
        "downscale_delay_s": 60.0,
    },
    ray_actor_options={"num_cpus": 0.5},
)
@serve.ingress(api)
class ClassifierIngress:
    """Decode + featurize (the batch job's CPU stage) in a thread pool, then call :class:`GenreModel`.

    Args:
        model: handle to the model deployment.
        bundle: the bundle as ``build_app`` resolved it (configs with the overrides, no weights).
        args: :class:`serving.config.AppArgs` as a dict.
    """

    def __init__(self, model: DeploymentHandle, bundle: ModelBundle, args: dict[str, Any]) -> None:
        self.args = parse_args(args)
        self.model = model
        self.bundle = bundle
        # One intra-op thread per featurization, as the batch job's CPU actors; parallelism comes from the pool.
        self.featurize = ExcerptFeaturizer(self.bundle.features, torch_threads=1, labels=self.bundle.genres)
        self.executor = ThreadPoolExecutor(max_workers=self.args.featurize_threads, thread_name_prefix="featurize")
        self.feature_hash = self.bundle.feature_hash
        self.seen_ready = False
        self.page = resources.files(_PAGE[0]).joinpath(_PAGE[1]).read_text(encoding="utf-8")
        self.page_headers = page_headers(self.page)

    def __del__(self) -> None:
        executor = getattr(self, "executor", None)
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    # ---------------------------------------------------------------------------------------------- routes

    @api.get("/", response_class=HTMLResponse, summary="The listening page")
    async def page(self) -> HTMLResponse:
        """A page for people: drop audio files, see the genres, tags, review warning and spectrogram."""
        return HTMLResponse(self.page, headers=self.page_headers)

    @api.post(
        "/v1/classify",
        response_model=Classification,
        response_model_exclude_unset=True,  # no `spectrogram` key unless asked for
        responses=_ERRORS,
        openapi_extra=_CLASSIFY_BODY,
    )
    async def classify(
        self, request: Request, top_k: int | None = _TOP_K, spectrogram: bool = _SPECTROGRAM
    ) -> dict[str, Any]:
        """Classify one audio file sent as the raw body or as multipart field ``file``."""
        started = time.perf_counter()
        self._check_top_k(top_k)
        media = media_type(request)
        if media == "multipart/form-data":
            parts = await read_form(request, self.args.max_body_bytes)
            data = next((p.data for p in parts if p.name == "file"), None)
            if data is None:
                raise ApiError(400, "missing_file", "the multipart form has no field named 'file'")
        elif is_raw_audio(media):
            data = await read_body(request, self.args.max_body_bytes)
        else:
            raise _unsupported(media, f"{RAW_AUDIO_TYPES} (raw bytes) or multipart/form-data (field 'file')")
        read_s = time.perf_counter() - started
        picture: dict[str, Any] | None = None
        if spectrogram:
            features, picture, spectrogram_s = await self._in_pool(self._with_spectrogram, data)
        else:
            features = await self._featurize(data)
        model_started = time.perf_counter()
        result = await self._call_model("classify", features)
        model_s = time.perf_counter() - model_started
        body = self._classification(result, top_k, read_s, model_s, started)
        if picture is not None:
            body["spectrogram"] = picture
            body["timings_ms"]["spectrogram"] = round(1e3 * spectrogram_s, 3)
        return body

    @api.post(
        "/v1/classify/batch",
        response_model=BatchResponse,
        response_model_exclude_unset=True,
        responses=_ERRORS,
        openapi_extra=_BATCH_BODY,
    )
    async def classify_batch(self, request: Request, top_k: int | None = _TOP_K) -> dict[str, Any]:
        """Classify every file of a multipart form; a bad file gets an error entry, the others still succeed."""
        started = time.perf_counter()
        self._check_top_k(top_k)
        media = media_type(request)
        if media != "multipart/form-data":
            raise _unsupported(media, "multipart/form-data with one part per file")
        parts = [p for p in await read_form(request, self.args.max_body_bytes) if p.filename is not None]
        if not parts:
            raise ApiError(400, "missing_file", "the multipart form has no file parts (parts with a filename)")
        if len(parts) > self.args.max_files_per_request:
            raise ApiError(
                400,
                "too_many_files",
                f"{len(parts)} files in one request; the limit is {self.args.max_files_per_request}",
            )
        read_s = time.perf_counter() - started
        featurized = await asyncio.gather(*(self._featurize(p.data) for p in parts), return_exceptions=True)
        for outcome in featurized:
            if isinstance(outcome, BaseException) and not isinstance(outcome, ApiError):
                raise outcome
        good = [i for i, f in enumerate(featurized) if isinstance(f, FeaturizedAudio)]
        model_started = time.perf_counter()
        files = [featurized[i] for i in good]
        results = await self._call_model("classify_many", files) if files else []
        model_s = time.perf_counter() - model_started
        by_index = dict(zip(good, results))
        items: list[dict[str, Any]] = []
        for i, (part, outcome) in enumerate(zip(parts, featurized)):
            if isinstance(outcome, ApiError):
                items.append(_file_error(part.filename, outcome.error, outcome.detail))
            elif isinstance(by_index[i], str):
                items.append(_file_error(part.filename, "inference_failed", by_index[i]))
            else:
                body = self._classification(by_index[i], top_k, read_s, model_s, started)
                items.append({"filename": part.filename, "status": "ok", **body})
        ok = sum(item["status"] == "ok" for item in items)
        timings = {"read": read_s, "model": model_s, "total": time.perf_counter() - started}
        return {
            "results": items,
            "files": len(items),
            "ok": ok,
            "errors": len(items) - ok,
            "timings_ms": {k: round(1e3 * v, 3) for k, v in timings.items()},
        }

    @api.get("/v1/health", response_model=Health, responses={503: {"model": ErrorBody}})
    async def health(self) -> Any:
        """200 once a model replica answers; 503 (with Retry-After) while none does."""
        response = self.model.ready.remote()
        try:
            info = await asyncio.wait_for(_await(response), timeout=self.args.health_timeout_s)
        except BackPressureError:
            if self.seen_ready:  # replicas are up, just saturated
                return {"status": "busy", "model_version": self.bundle.version, "feature_hash": self.feature_hash}
            return self._not_ready("the model queue is full and no replica has answered yet")
        except asyncio.TimeoutError:
            response.cancel()
            return self._not_ready(f"no model replica answered within {self.args.health_timeout_s:g} s")
        except (DeploymentUnavailableError, ReplicaUnavailableError, RayActorError) as e:
            return self._not_ready(f"the model deployment is unavailable: {e}")
        self.seen_ready = True
        return {"status": "ok", **info}

    @api.get("/v1/model", response_model=ModelInfo)
    async def model_info(self) -> dict[str, Any]:
        """The bundle this service runs, and the service's limits."""
        manifest = self.bundle.manifest()
        manifest.pop("format", None)
        manifest["genres"] = list(self.bundle.genres)
        manifest["service"] = {
            "max_body_mb": self.args.max_body_mb,
            "max_files_per_request": self.args.max_files_per_request,
            "bundle_uri": self.args.bundle_uri or f"default bundle ({DEFAULT_BUNDLE})",
        }
        return manifest

    # --------------------------------------------------------------------------------------------- helpers

    def _check_top_k(self, top_k: int | None) -> None:
        if top_k is not None and top_k > len(self.bundle.genres):
            raise ApiError(
                422, "invalid_parameter", f"top_k is {top_k}; the model names {len(self.bundle.genres)} genres"
            )

    async def _featurize(self, data: bytes) -> FeaturizedAudio:
        """The batch job's CPU stage on a thread of the pool (the event loop keeps serving)."""
        return await self._in_pool(self.featurize, data)

    def _with_spectrogram(self, source: io.BytesIO) -> tuple[FeaturizedAudio, dict[str, Any], float]:
        return _featurize_with_spectrogram(self.featurize, source, SPECTROGRAM_MAX_COLUMNS)

    async def _in_pool(self, work: Callable[[io.BytesIO], Any], data: bytes) -> Any:
        """``work(upload)`` on a thread of the pool; the core's refusals become 400s."""
        if not data:
            raise ApiError(400, "empty_audio", "empty file (0 bytes)")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.executor, work, io.BytesIO(data))
        except StageError as e:
            raise stage_error(e) from e

    async def _call_model(self, method: str, *args: Any) -> Any:
        """Call the model deployment; a full queue or a missing replica is a 503 with Retry-After."""
        retry = {"Retry-After": str(self.args.retry_after_s)}
        response = getattr(self.model, method).remote(*args)
        try:
            try:
                result = await asyncio.wait_for(_await(response), timeout=self.args.model_timeout_s)
            except (ReplicaUnavailableError, RayActorError):
                # The replica died under the request; inference is pure, so another replica may answer it (once).
                response = getattr(self.model, method).remote(*args)
                result = await asyncio.wait_for(_await(response), timeout=self.args.model_timeout_s)
        except asyncio.TimeoutError:
            response.cancel()
            detail = f"no model replica answered within {self.args.model_timeout_s:g} s"
            raise ApiError(503, "model_timeout", detail, retry) from None
        except BackPressureError as e:
            raise ApiError(503, "overloaded", f"the model queue is full, retry later ({e})", retry) from e
        except (DeploymentUnavailableError, ReplicaUnavailableError, RayActorError) as e:
            raise ApiError(503, "model_unavailable", f"no model replica could take the request: {e}", retry) from e
        for one in result if isinstance(result, list) else [result]:
            if isinstance(one, ModelResult) and one.record.feature_hash != self.feature_hash:
                served = one.record
                raise ApiError(
                    503,
                    "model_mismatch",
                    f"the model replicas serve features {served.feature_hash} (bundle {served.model_version}) but this "
                    f"ingress computes {self.feature_hash}: a deploy is rolling out or the bundle changed; retry",
                    retry,
                )
        return result

    def _classification(
        self, result: ModelResult, top_k: int | None, read_s: float, model_s: float, started: float
    ) -> dict[str, Any]:
        """The response for one file: its record (:func:`serving.schemas.response_fields`), then the request's own
        facts. ``read_s`` is the request body's; ``top_k`` re-ranks the probabilities when the query asks."""
        record = replace(result.record, read_s=read_s)
        if top_k is not None:
            record = replace(record, top_k=top_k_of(record.probabilities, self.bundle.genres, top_k))
        timings = {"queue": max(0.0, model_s - result.batch_inference_s), "total": time.perf_counter() - started}
        return response_fields(record, self.bundle.genres) | {
            "batch": {
                "files": result.batch_files,
                "windows": result.batch_windows,
                "inference_s": result.batch_inference_s,
            },
            "timings_ms": {k: round(1e3 * v, 3) for k, v in timings.items()},
        }

    def _not_ready(self, detail: str) -> JSONResponse:
        return ApiError(503, "not_ready", detail, {"Retry-After": str(self.args.retry_after_s)}).response()
