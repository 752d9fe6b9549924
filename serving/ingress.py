"""The HTTP ingress: validate the request, featurize on CPU threads, ask the model deployment, convert.

Routes (all JSON; errors are ``{"error": code, "detail": message}``):

- ``POST /v1/classify``: one audio file, raw bytes (``audio/*`` / ``application/octet-stream``) or
  multipart field ``file``; optional ``?top_k=``.
- ``POST /v1/classify/batch``: several files as multipart parts; one result (or error) per file.
- ``GET /v1/health``: 200 once a model replica answers, 503 before.
- ``GET /v1/model``: the bundle's labels, version, feature config and feature hash.
"""

# No `from __future__ import annotations` here, on purpose: FastAPI resolves the routes' annotations
# from the endpoint functions' globals, and Serve freezes the app with cloudpickle, which keeps only the
# globals the code references; string annotations such as "Request" would then no longer resolve.
import asyncio
import io
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.config import BackpressureConfig
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle

import acousticsense
from acousticsense import top_k as top_k_of
from acousticsense.bundle import DEFAULT_BUNDLE
from acousticsense.extract import ExcerptFeaturizer, FeaturizedAudio, StageError
from serving._body import RAW_AUDIO_TYPES, is_raw_audio, media_type, read_body, read_form
from serving.config import load_service_bundle, parse_args
from serving.errors import ApiError, install_error_handlers, stage_error
from serving.model import ModelResult
from serving.schemas import BatchResponse, Classification, ErrorBody, Health, ModelInfo

__all__ = ["ClassifierIngress", "api"]

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
        413: "body over max_body_mb",
        415: f"Content-Type is not {RAW_AUDIO_TYPES} or multipart/form-data",
        422: "invalid query parameter (top_k)",
        503: "the model queue is full or no model replica is up (see Retry-After)",
    }.items()
}
_TOP_K = Query(default=None, ge=1, description="how many genres to list in top_k (default: the bundle's)")


# Module-level helpers must be defined before the deployment class: Serve snapshots the class (and the
# globals its methods use) when it is decorated.


async def _await(response: Any) -> Any:
    return await response


def _file_error(filename: str | None, error: str, detail: str) -> dict[str, Any]:
    return {"filename": filename, "status": "error", "error": error, "detail": detail}


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
        args: :class:`serving.config.AppArgs` as a dict.
    """

    def __init__(self, model: DeploymentHandle, args: dict[str, Any]) -> None:
        self.args = parse_args(args)
        self.model = model
        self.bundle = load_service_bundle(self.args)
        # One intra-op thread per featurization, as the batch job's CPU actors; parallelism comes from the pool.
        self.featurize = ExcerptFeaturizer(self.bundle.features, torch_threads=1, labels=self.bundle.genres)
        self.executor = ThreadPoolExecutor(max_workers=self.args.featurize_threads, thread_name_prefix="featurize")
        self.feature_hash = self.bundle.feature_hash
        self.seen_ready = False

    def __del__(self) -> None:
        executor = getattr(self, "executor", None)
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    # ---------------------------------------------------------------------------------------------- routes

    @api.post("/v1/classify", response_model=Classification, responses=_ERRORS)
    async def classify(self, request: Request, top_k: int | None = _TOP_K) -> dict[str, Any]:
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
        features = await self._featurize(data)
        model_started = time.perf_counter()
        result = await self._call_model("classify", features)
        model_s = time.perf_counter() - model_started
        return self._classification(features, result, top_k, read_s, model_s, started)

    @api.post("/v1/classify/batch", response_model=BatchResponse, responses=_ERRORS)
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
                body = self._classification(outcome, by_index[i], top_k, read_s, model_s, started)
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
        if not data:
            raise ApiError(400, "empty_audio", "empty file (0 bytes)")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.executor, self.featurize, io.BytesIO(data))
        except StageError as e:
            raise stage_error(e) from e

    async def _call_model(self, method: str, *args: Any) -> Any:
        """Call the model deployment; a full queue or a missing replica is a 503 with Retry-After."""
        retry = {"Retry-After": str(self.args.retry_after_s)}
        response = getattr(self.model, method).remote(*args)
        try:
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
            if isinstance(one, ModelResult) and one.feature_hash != self.feature_hash:
                raise ApiError(
                    503,
                    "model_mismatch",
                    f"the model replicas serve features {one.feature_hash} (bundle {one.model_version}) but this "
                    f"ingress computes {self.feature_hash}: a deploy is rolling out or the bundle changed; retry",
                    retry,
                )
        return result

    def _classification(
        self,
        features: FeaturizedAudio,
        result: ModelResult,
        top_k: int | None,
        read_s: float,
        model_s: float,
        started: float,
    ) -> dict[str, Any]:
        prediction = result.prediction
        labels = self.bundle.genres
        ranked = prediction.top_k if top_k is None else top_k_of(prediction.probabilities, labels, top_k)
        timings = {"read": read_s, **features.timings_s}
        timings.update(
            queue=max(0.0, model_s - result.inference_s),
            inference=result.inference_s,
            total=time.perf_counter() - started,
        )
        return {
            "top_genre": prediction.top_genre,
            "confidence": prediction.confidence,
            "top_k": ranked,
            "probabilities": dict(zip(labels, prediction.probabilities.tolist())),
            "uncertainty": prediction.uncertainty,
            "needs_review": prediction.needs_review,
            "segment_genres": list(prediction.segment_genres),
            "tags": prediction.tags,
            "duration_s": features.duration_s,
            "excerpt_s": features.excerpt_s,
            "offset_s": features.offset_s,
            "sample_rate_hz": features.sample_rate_hz,
            "channels": features.channels,
            "windows": int(features.windows.shape[0]),
            "model_version": result.model_version,
            "feature_hash": result.feature_hash,
            "batch": {"files": result.batch_files, "windows": result.batch_windows},
            "timings_ms": {k: round(1e3 * v, 3) for k, v in timings.items()},
        }

    def _not_ready(self, detail: str) -> JSONResponse:
        return ApiError(503, "not_ready", detail, {"Retry-After": str(self.args.retry_after_s)}).response()
