"""Project metrics through ``ray.util.metrics``: exported on each node's metrics port, so Prometheus and the
Ray dashboard's Grafana see them (Prometheus names get Ray's ``ray_`` prefix).

Metric objects are created lazily, once per worker process, the first time a stage records something.
"""

from __future__ import annotations

from functools import lru_cache

from ray.util.metrics import Counter, Gauge, Histogram

# Seconds; a 30 s excerpt's decode is ~5-60 ms, a batch forward can take seconds on CPU.
_STAGE_BOUNDARIES = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
_BATCH_BOUNDARIES = [1, 4, 16, 32, 64, 128, 256, 512, 1024, 2048]


@lru_cache(maxsize=1)
def metrics() -> dict[str, Counter | Gauge | Histogram]:
    return {
        "files": Counter(
            "acousticsense_files_total", "Files classified, by final status and error stage.", ("status", "stage")
        ),
        "audio_seconds": Counter("acousticsense_audio_seconds_total", "Duration of the files classified, seconds."),
        "windows": Counter("acousticsense_windows_total", "Model windows inferred."),
        "stage_seconds": Histogram(
            "acousticsense_stage_seconds", "Per-file seconds spent in each stage.", _STAGE_BOUNDARIES, ("stage",)
        ),
        "predictions": Counter("acousticsense_predictions_total", "Top-genre predictions, by genre.", ("genre",)),
        "batch_windows": Histogram(
            "acousticsense_inference_batch_windows",
            "Windows per inference call (files batched together).",
            _BATCH_BOUNDARIES,
        ),
        "queue_files": Gauge("acousticsense_queue_files", "Files in the inference call being processed."),
        "gpu_peak_memory": Gauge(
            "acousticsense_gpu_peak_memory_bytes",
            "Peak GPU memory torch allocated during the actor's last inference call (GPU actors only).",
        ),
    }


def observe_stages(timings: dict[str, float | None]) -> None:
    """Record one file's stage seconds (``None`` for stages it did not reach)."""
    histogram = metrics()["stage_seconds"]
    for stage, seconds in timings.items():
        if seconds is not None:
            histogram.observe(seconds, tags={"stage": stage})
