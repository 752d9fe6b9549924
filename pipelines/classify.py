"""Classify every audio file under one or more inputs and write one Parquet row per file.

Run it locally (starts Ray in-process when ``RAY_ADDRESS`` is unset) or on a cluster::

    python -m pipelines.classify --input data/music --output out/predictions
    ray job submit --working-dir . -- python -m pipelines.classify --input s3://bucket/music --output s3://bucket/preds

Stages: list files (driver) -> decode + featurize (CPU actor pool) -> batched inference across files
(GPU actor pool, one GPU per actor) -> Parquet shards. On a cluster without GPUs the first two stages
run fused in one CPU actor pool.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
from ray.data import ActorPoolStrategy

from acousticsense import DEFAULT_BUNDLE, NAMED_BUNDLES, AcousticSenseError, list_files
from acousticsense.storage import check_writable, filesystem, is_remote, join_uri
from pipelines._stages import ClassifyWindows, FeaturizeAndClassify, FeaturizeFiles, job_bundle
from pipelines._summary import JobSummary, summarize
from pipelines._write import WriteShards

__all__ = ["JobOptions", "run_classification", "main"]

logger = logging.getLogger(__name__)


@dataclass
class JobOptions:
    """Everything one classification job needs; the CLI maps its flags onto this."""

    inputs: list[str]
    output: str
    model: str | None = None
    storage_options: dict[str, Any] = field(default_factory=dict)
    extensions: frozenset[str] | None = None
    cpu_actors: int | None = None  # None: derived from the cluster
    accelerator_actors: int | None = None
    files_per_batch: int = 4  # CPU stage
    inference_files_per_batch: int | None = None  # None: 64 (GPU stage; CPU-only jobs use files_per_batch)
    max_batch_windows: int | None = None  # None: 512 with GPUs, 128 on CPU
    files_per_shard: int | None = None  # None: the inference batch with GPUs, 64 on CPU
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    excerpt_s: float | None = None
    excerpt_policy: str | None = None
    segments: int | None = None
    aggregation: str | None = None
    enhance: str | None = None
    rules: bool | None = None
    top_k: int | None = None
    review_threshold: float | None = None
    overwrite: bool = False
    resume: bool = False
    keep_window_logits: bool = False  # evaluation only: adds a window_logits column
    features_on: str = "cpu"  # or "accelerator" (alias "gpu"): STFT + mel in the inference stage
    cache: str | None = None  # spectrogram cache URI

    def __post_init__(self) -> None:
        if self.features_on == "gpu":
            self.features_on = "accelerator"
        if self.features_on not in ("cpu", "accelerator"):
            raise ValueError(f"features_on must be 'cpu', 'accelerator' or 'gpu', got {self.features_on!r}")
        if self.cache and self.features_on == "accelerator":
            # The cache stores windows made on the CPU actors; with this placement they are made later.
            raise ValueError("--cache needs --features-on cpu: the cache stores windows made by the CPU actors")

    def overrides(self) -> dict[str, Any]:
        return {
            "excerpt_s": self.excerpt_s,
            "excerpt_policy": self.excerpt_policy,
            "segments": self.segments,
            "aggregation": self.aggregation,
            "enhance": self.enhance,
            "rules": self.rules,
            "top_k": self.top_k,
            "review_threshold": self.review_threshold,
        }


@dataclass(frozen=True)
class _Plan:
    fused: bool  # no accelerator: one pool featurizes and classifies
    cpu_actors: int
    cpus_per_featurize_actor: float
    accelerator_actors: int
    gpus_per_actor: float
    cpus_per_accelerator_actor: float
    inference_files_per_batch: int
    max_batch_windows: int
    files_per_shard: int
    device: str


def plan_resources(options: JobOptions, resources: Mapping[str, float]) -> _Plan:
    """Pool sizes from the cluster: one inference actor per GPU, or, without GPUs, one fused actor per core."""
    cpus = max(1, int(resources.get("CPU", 1)))
    gpus = int(resources.get("GPU", 0))
    use_gpu = gpus > 0 and options.device in ("auto", "cuda")
    if use_gpu:
        # GPU actors ask for no CPU: a featurization actor that took a GPU node's last core must not keep
        # the GPU actor from being placed there. The actor still resolves 'auto' itself, so a node that
        # advertises a GPU without CUDA (or a test's fake GPU) runs on its CPU instead of failing.
        return _Plan(
            fused=False,
            cpu_actors=options.cpu_actors or cpus,
            cpus_per_featurize_actor=1.0,
            accelerator_actors=options.accelerator_actors or gpus,
            gpus_per_actor=1.0,
            cpus_per_accelerator_actor=0.0,
            inference_files_per_batch=options.inference_files_per_batch or 64,
            max_batch_windows=options.max_batch_windows or 512,
            files_per_shard=options.files_per_shard or options.inference_files_per_batch or 64,
            device=options.device,
        )
    # CPU only: each actor featurizes its files and classifies them (FeaturizeAndClassify), one per core.
    ignored = [
        f"--{n.replace('_', '-')}" for n in ("accelerator_actors", "inference_files_per_batch") if getattr(options, n)
    ]
    if ignored:
        logger.warning("no GPUs: inference runs inside the CPU actors, so %s do(es) not apply", ", ".join(ignored))
    cpu_actors = options.cpu_actors or cpus
    return _Plan(
        fused=True,
        cpu_actors=cpu_actors,
        cpus_per_featurize_actor=cpus / cpu_actors,
        accelerator_actors=0,
        gpus_per_actor=0.0,
        cpus_per_accelerator_actor=0.0,
        inference_files_per_batch=options.files_per_batch,
        max_batch_windows=options.max_batch_windows or 128,
        files_per_shard=options.files_per_shard or 64,
        device="cpu" if options.device == "auto" else options.device,
    )


def _list_inputs(options: JobOptions) -> Iterator[dict[str, Any]]:
    """Every file under every input; an explicitly named file that is missing becomes a 'list' error row."""
    seen: set[str] = set()
    for uri in options.inputs:
        try:
            paths = list_files(uri, options.extensions, options.storage_options)
            for path in paths:
                if path not in seen:
                    seen.add(path)
                    yield {"path": path, "list_error": None}
        except FileNotFoundError:
            if _looks_like_file(uri):
                yield {"path": uri, "list_error": f"input file not found: {uri}"}
            else:
                raise


def _looks_like_file(uri: str) -> bool:
    tail = uri.rstrip("/").rsplit("/", 1)[-1]
    return "." in tail and not uri.endswith("/")


def run_classification(options: JobOptions, *, progress: bool = True) -> JobSummary:
    """Run the job on the current Ray cluster (``ray.init`` must have been called) and return its summary.

    Raises:
        AcousticSenseError / FileNotFoundError: bad model bundle, missing input folder.
    """
    started = time.perf_counter()
    # Fail fast on the driver; the weights are read by the inference actors only.
    bundle = job_bundle(options.model, options.storage_options, options.overrides(), weights=False)
    items = list(_list_inputs(options))
    if not items:
        raise FileNotFoundError(f"no files found under {options.inputs}")
    _prepare_output(options.output, options.storage_options, options.overwrite, options.resume)
    skipped = 0
    if options.resume:
        done = completed_paths(options.output, options.storage_options, bundle.version, bundle.feature_hash)
        remaining = [item for item in items if item["path"] not in done]
        skipped, items = len(items) - len(remaining), remaining
    plan = plan_resources(options, ray.cluster_resources())
    tables = _stream(options, plan, items, progress) if items else []
    summary = summarize(
        pa.concat_tables(tables) if tables else None,
        wall_s=time.perf_counter() - started,
        expected_files=len(items),
        output=options.output,
        model_version=bundle.version,
        feature_hash=bundle.feature_hash,
        plan=asdict(plan),
        skipped_existing=skipped,
    )
    return _write_summary(options, summary)


def _stream(options: JobOptions, plan: _Plan, items: list[dict[str, Any]], progress: bool) -> list[pa.Table]:
    """Featurize, classify and write ``items`` as one streaming Ray Data pipeline; the writer's summary rows."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    ctx.execution_options.verbose_progress = False
    blocks = max(1, min(math.ceil(len(items) / options.files_per_batch), 4096))
    stage_args = (options.model, options.storage_options, options.overrides())
    # A small job gets no more actors than it has batches: each idle actor still costs a worker start.
    cpu_pool = min(plan.cpu_actors, blocks)
    featurize_kwargs = dict(features_on=options.features_on, cache_uri=options.cache)
    classify_kwargs = dict(
        device=plan.device,
        precision=options.precision,
        compile=options.compile,
        max_batch_windows=plan.max_batch_windows,
        keep_window_logits=options.keep_window_logits,
    )
    ds = ray.data.from_items(items, override_num_blocks=blocks)
    if plan.fused:
        ds = ds.map_batches(
            FeaturizeAndClassify,
            fn_constructor_args=stage_args,
            # The actor's cores (one by default) serve both stages: torch's thread count is process-wide.
            fn_constructor_kwargs=featurize_kwargs
            | classify_kwargs
            | dict(torch_threads=max(1, int(plan.cpus_per_featurize_actor))),
            batch_size=options.files_per_batch,
            batch_format="pyarrow",
            compute=ActorPoolStrategy(min_size=cpu_pool, max_size=cpu_pool),
            num_cpus=plan.cpus_per_featurize_actor,
        )
    else:
        accelerator_pool = min(plan.accelerator_actors, math.ceil(len(items) / plan.inference_files_per_batch))
        ds = ds.map_batches(
            FeaturizeFiles,
            fn_constructor_args=stage_args,
            fn_constructor_kwargs=featurize_kwargs,
            batch_size=options.files_per_batch,
            batch_format="pyarrow",
            compute=ActorPoolStrategy(min_size=cpu_pool, max_size=cpu_pool),
            num_cpus=plan.cpus_per_featurize_actor,
        )
        ds = ds.map_batches(
            ClassifyWindows,
            fn_constructor_args=stage_args,
            fn_constructor_kwargs=classify_kwargs | dict(torch_threads=max(1, int(plan.cpus_per_accelerator_actor))),
            batch_size=plan.inference_files_per_batch,
            batch_format="pyarrow",
            compute=ActorPoolStrategy(min_size=accelerator_pool, max_size=accelerator_pool),
            num_cpus=plan.cpus_per_accelerator_actor,
            num_gpus=plan.gpus_per_actor or None,
        )
    # Writing is light I/O: long-lived actors that hold no CPU, so they never wait for one the pools hold.
    # One is enough for a small cluster; object-store uploads on a big one get up to one per 16 CPU actors.
    ds = ds.map_batches(
        WriteShards,
        fn_constructor_args=(options.output, options.storage_options),
        batch_size=plan.files_per_shard,
        batch_format="pyarrow",
        compute=ActorPoolStrategy(min_size=1, max_size=max(1, math.ceil(cpu_pool / 16))),
        num_cpus=0,
    )
    return list(ds.iter_batches(batch_format="pyarrow", batch_size=None))


def _write_summary(options: JobOptions, summary: JobSummary) -> JobSummary:
    fs, root = filesystem(options.output, options.storage_options)
    with fs.open(join_uri(root, "_summary.json"), "w") as f:
        json.dump(summary.to_dict(), f, indent=2)
    return summary


def completed_paths(output: str, storage_options: Mapping[str, Any], model_version: str, feature_hash: str) -> set[str]:
    """Paths that already have a row under ``output`` for this model version and feature config.

    Only committed shards count (``part-*.parquet``; shards in progress have hidden names), and only
    the three columns needed are read.
    """
    fs, root = filesystem(output, storage_options)
    if not fs.exists(root):
        return set()
    shards = fs.glob(join_uri(root, "part-*.parquet"))
    if not shards:
        return set()
    table = pq.ParquetDataset(shards, filesystem=fs).read(columns=["path", "model_version", "feature_hash"])
    same = pc.and_(pc.equal(table["model_version"], model_version), pc.equal(table["feature_hash"], feature_hash))
    return set(table.filter(same).column("path").to_pylist())


def _prepare_output(output: str, storage_options: Mapping[str, Any], overwrite: bool, resume: bool) -> None:
    """Refuse to mix a new run's rows with an old run's, unless asked to replace them or to resume."""
    if overwrite and resume:
        raise ValueError("--overwrite and --resume contradict each other: choose one")
    fs, root = filesystem(output, storage_options)
    existing = fs.glob(join_uri(root, "part-*.parquet")) if fs.exists(root) else []
    if resume:
        existing = []  # keep them: resume reads them to skip finished files
    elif existing and not overwrite:
        raise FileExistsError(
            f"{output} already holds {len(existing)} prediction shard(s); pass --resume to finish that run, "
            "--overwrite to replace it, or choose another --output"
        )
    for path in existing + (fs.glob(join_uri(root, "_summary.json")) if existing else []):
        fs.rm(path)
    if is_remote(output):
        check_writable(output, storage_options)  # a missing bucket fails now, not after the whole job
    else:
        fs.makedirs(root, exist_ok=True)


def _parse_storage_option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--storage-option wants key=value, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)  # numbers, booleans, JSON objects
    except json.JSONDecodeError:
        return key, value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipelines.classify",
        description="Classify every audio file under the inputs; write one Parquet row per file.",
    )
    p.add_argument(
        "--input",
        dest="inputs",
        action="append",
        required=True,
        metavar="URI",
        help="folder, file or fsspec URI (s3://…); repeat for several",
    )
    p.add_argument("--output", required=True, metavar="URI", help="folder or URI for the Parquet shards")
    p.add_argument(
        "--model",
        metavar="BUNDLE",
        help=f"a shipped bundle ({', '.join(NAMED_BUNDLES)}) or a bundle folder / URI (default: {DEFAULT_BUNDLE})",
    )
    p.add_argument(
        "--storage-option",
        action="append",
        default=[],
        type=_parse_storage_option,
        metavar="KEY=VALUE",
        help="fsspec option, e.g. endpoint_url=http://127.0.0.1:8333 (repeatable)",
    )
    p.add_argument("--extensions", help="comma-separated extensions to keep (default: every non-hidden file)")
    p.add_argument("--cpu-actors", type=int, help="featurization actors (default: one per core)")
    p.add_argument(
        "--accelerator-actors",
        type=int,
        help="inference actors (default: one per GPU; without GPUs, inference runs in the CPU actors)",
    )
    p.add_argument("--files-per-batch", type=int, default=4, help="files per featurization call (default 4)")
    p.add_argument("--inference-files-per-batch", type=int, help="files per inference call on GPUs (default 64)")
    p.add_argument("--max-batch-windows", type=int, help="windows per forward pass (default 512 GPU / 128 CPU)")
    p.add_argument(
        "--files-per-shard",
        type=int,
        help="rows per Parquet shard, the unit --resume keeps (default: the GPU inference batch, 64)",
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16", "int8"])
    p.add_argument(
        "--features-on",
        default="cpu",
        choices=["cpu", "accelerator", "gpu"],
        help="where STFT + mel run: CPU actors (default), or the inference actors (CPU actors then only decode);"
        " 'gpu' is another name for 'accelerator'",
    )
    p.add_argument("--cache", metavar="URI", help="spectrogram cache (folder or URI): unchanged files skip features")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (pays off on GPUs, long jobs)")
    p.add_argument("--excerpt-s", type=float, help="seconds analysed per file (default: the bundle's, 30)")
    p.add_argument("--excerpt-policy", choices=["middle", "start"], help="where the excerpt sits (default middle)")
    p.add_argument("--segments", type=int, help="excerpts spread over each track (default: the bundle's, 1)")
    p.add_argument("--aggregation", choices=["mean", "vote"], help="mean of windows, or a vote of segments")
    p.add_argument(
        "--enhance",
        choices=["none", "denoise", "compress", "both"],
        help="spectral subtraction and/or dynamic range compression (default: the bundle's, none)",
    )
    p.add_argument(
        "--rules", action="store_true", default=None, help="reweight classes by tempo/low end/vocals (heuristics)"
    )
    p.add_argument("--top-k", type=int, help="genres listed in top_k (default 5)")
    p.add_argument("--review-threshold", type=float, help="needs_review when uncertainty exceeds this (default 0.7)")
    p.add_argument("--overwrite", action="store_true", help="replace predictions already under --output")
    p.add_argument(
        "--resume",
        action="store_true",
        help="skip files that already have a row under --output for this model version and feature config",
    )
    p.add_argument("--no-progress", action="store_true", help="hide Ray Data's progress bars")
    return p


def options_from_args(args: argparse.Namespace) -> JobOptions:
    extensions = None
    if args.extensions:
        extensions = frozenset(e.strip().lower().lstrip(".") for e in args.extensions.split(",") if e.strip())
    for name in (
        "cpu_actors",
        "accelerator_actors",
        "files_per_batch",
        "inference_files_per_batch",
        "max_batch_windows",
        "files_per_shard",
        "top_k",
        "segments",
    ):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    return JobOptions(
        inputs=args.inputs,
        output=args.output,
        model=args.model,
        storage_options=dict(args.storage_option),
        extensions=extensions,
        cpu_actors=args.cpu_actors,
        accelerator_actors=args.accelerator_actors,
        files_per_batch=args.files_per_batch,
        inference_files_per_batch=args.inference_files_per_batch,
        max_batch_windows=args.max_batch_windows,
        files_per_shard=args.files_per_shard,
        device=args.device,
        precision=args.precision,
        compile=args.compile,
        excerpt_s=args.excerpt_s,
        excerpt_policy=args.excerpt_policy,
        segments=args.segments,
        aggregation=args.aggregation,
        enhance=args.enhance,
        rules=args.rules,
        top_k=args.top_k,
        review_threshold=args.review_threshold,
        overwrite=args.overwrite,
        resume=args.resume,
        features_on=args.features_on,
        cache=args.cache,
    )


def connect_ray() -> None:
    """Join the cluster in ``RAY_ADDRESS`` (as under ``ray job submit``), or start a local Ray.

    Raises:
        ValueError: ``RAY_ADDRESS`` is the dashboard's HTTP address, which jobs are submitted to, not joined.
    """
    address = os.environ.get("RAY_ADDRESS", "")
    if address.startswith(("http://", "https://")):
        raise ValueError(
            f"RAY_ADDRESS={address} is the dashboard's job API: submit with `ray job submit --address {address} "
            "-- python -m pipelines.classify ...`, or unset RAY_ADDRESS to run on a local Ray"
        )
    ray.init(ignore_reinit_error=True, logging_level="WARNING")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        options = options_from_args(args)
        connect_ray()
        summary = run_classification(options, progress=not args.no_progress)
    except (AcousticSenseError, OSError, ValueError) as e:
        # Bad bundle, missing input or bucket, refused credentials, existing output: say what, no traceback.
        print(f"error: {type(e).__name__}: {e}" if isinstance(e, OSError) else f"error: {e}", file=sys.stderr)
        return 2
    print(summary.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
