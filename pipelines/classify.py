"""Classify every audio file under one or more inputs and write one Parquet row per file.

Run it locally (starts Ray in-process, without its dashboard unless ``--dashboard``, when ``RAY_ADDRESS`` is
unset) or on a cluster::

    python -m pipelines.classify --input data/music --output out/predictions
    ray job submit --working-dir . -- python -m pipelines.classify --input s3://bucket/music --output s3://bucket/preds

Stages: list files (driver) -> decode + featurize (CPU actor pool) -> batched inference across files
(GPU actor pool, one GPU per actor) -> Parquet shards (written by the driver; by writer actors when the
CPU pool has more than 16 actors). On a cluster without GPUs the first two stages run fused in one CPU
actor pool. The driver checks the bundle and lists the inputs while Ray starts.
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, make_dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import ray
from ray.data import ActorPoolStrategy

from acousticsense import (
    DEVICES,
    OVERRIDES,
    PRECISIONS,
    AcousticSenseError,
    ConfigError,
    Device,
    Override,
    Precision,
    check_overrides,
    check_writable,
    filesystem,
    is_remote,
    join_uri,
    list_files,
    reaching,
)
from pipelines._stages import ClassifyWindows, FeaturizeAndClassify, FeaturizeFiles
from pipelines._summary import JobSummary, summarize
from pipelines._write import JOURNAL, JournaledShards, WriteShards, committed_rows, recover_journal

if TYPE_CHECKING:
    from acousticsense import ModelBundle  # imports torch: the driver loads it in _settle's thread

__all__ = ["JobOptions", "run_classification", "main"]

logger = logging.getLogger(__name__)


def _override_fields(overrides: Mapping[str, Override] = OVERRIDES) -> type:
    """A frozen dataclass with one keyword-only field per declared override (``acousticsense.options.OVERRIDES``).

    ``JobOptions`` inherits it, so ``JobOptions(..., segments=3)``, ``options.segments`` and
    ``dataclasses.replace(options, enhance="both")`` work for every override without a line here per override.
    """
    fields = [(o.name, o.annotation | None, field(default=None)) for o in overrides.values()]
    namespace = {"__module__": __name__, "__doc__": "The bundle's per-run overrides; None: the bundle's value."}
    return make_dataclass("_Overrides", fields, frozen=True, kw_only=True, namespace=namespace)


_Overrides = _override_fields()

# Options that count something: None (where allowed) derives the count from the cluster or a default.
_COUNTS = (
    "cpu_actors",
    "accelerator_actors",
    "files_per_batch",
    "inference_files_per_batch",
    "max_batch_windows",
    "files_per_shard",
)


@dataclass(frozen=True)
class JobOptions(_Overrides):
    """Everything one classification job needs; the CLI maps its flags onto this.

    Besides the fields below it has one keyword field per per-run override of the bundle's config
    (``excerpt_s``, ``segments``, ``enhance``, ``rules``, … : ``acousticsense.options.OVERRIDES``), ``None`` keeping
    the bundle's value. Immutable, and checked whole when built: a bad value or combination raises
    ``ConfigError`` before any bundle is read, any input listed or Ray started.
    """

    inputs: list[str]
    output: str
    model: str | None = None
    # repr=False: may hold credentials (key/secret/token); a JobOptions repr must be safe to log.
    storage_options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    extensions: frozenset[str] | None = None
    cpu_actors: int | None = None  # None: derived from the cluster
    accelerator_actors: int | None = None
    files_per_batch: int = 4  # CPU stage
    inference_files_per_batch: int | None = None  # None: 64 (GPU stage; CPU-only jobs use files_per_batch)
    max_batch_windows: int | None = None  # None: 512 with GPUs, 4 on CPU (_CPU_BATCH_WINDOWS)
    files_per_shard: int | None = None  # None: the inference batch with GPUs, 64 on CPU
    device: Device = "auto"
    precision: Precision = "auto"
    compile: bool = False
    overwrite: bool = False
    resume: bool = False
    keep_window_logits: bool = False  # evaluation only: adds a window_logits column
    features_on: str = "cpu"  # or "accelerator" (alias "gpu"): STFT + mel in the inference stage
    cache: str | None = None  # spectrogram cache URI
    writer_actors: int | None = None  # None: derived from the CPU pool (_writer_actors); 0: the driver writes

    def __post_init__(self) -> None:
        """The one place job options are checked: everything that needs neither the bundle nor the inputs.

        Raises:
            ConfigError: a value of the wrong type or out of range, or options that contradict each other.
        """
        _check_places(self)
        _check_counts(self)
        if self.device not in DEVICES or self.precision not in PRECISIONS:
            raise ConfigError(
                f"device must be one of {', '.join(DEVICES)} and precision one of {', '.join(PRECISIONS)}; "
                f"got {self.device!r}, {self.precision!r}"
            )
        if self.features_on == "gpu":
            object.__setattr__(self, "features_on", "accelerator")  # the alias, settled once
        if self.features_on not in ("cpu", "accelerator"):
            raise ConfigError(f"features_on must be 'cpu', 'accelerator' or 'gpu', got {self.features_on!r}")
        if self.cache and self.features_on == "accelerator":
            # The cache stores windows made on the CPU actors; with this placement they are made later.
            raise ConfigError("--cache needs --features-on cpu: the cache stores windows made by the CPU actors")
        if self.overwrite and self.resume:
            raise ConfigError("--overwrite and --resume contradict each other: choose one")
        for name, value in check_overrides(self.overrides()).items():
            object.__setattr__(self, name, value)  # the declared type: an int excerpt_s becomes a float

    def overrides(self) -> dict[str, Any]:
        """The per-run overrides by name (``None``: the bundle's value), as ``ModelBundle.with_overrides`` takes
        them: the only way the stages get them."""
        return {name: getattr(self, name) for name in OVERRIDES}


def _check_places(options: JobOptions) -> None:
    """Inputs, output and storage options of the right shape (a bare string would be listed letter by letter)."""
    if not isinstance(options.inputs, (list, tuple)) or not all(isinstance(uri, str) for uri in options.inputs):
        raise ConfigError(f"inputs must be a list of folders / URIs, got {options.inputs!r}")
    if not isinstance(options.output, str):
        raise ConfigError(f"output must be a folder / URI, got {options.output!r}")
    if not isinstance(options.storage_options, Mapping):
        raise ConfigError(f"storage_options must be a mapping of fsspec options, got {type(options.storage_options)}")
    if isinstance(options.extensions, str):
        raise ConfigError(f"extensions must be a set of extensions, got the string {options.extensions!r}")


def _check_counts(options: JobOptions) -> None:
    """Every count at least 1 (``writer_actors`` at least 0: the driver writes); ``None`` where a default exists."""
    for name in _COUNTS:
        value = getattr(options, name)
        if value is None and name != "files_per_batch":
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be an integer >= 1, got {value!r}")
    writers = options.writer_actors
    if writers is not None and (not isinstance(writers, int) or isinstance(writers, bool) or writers < 0):
        raise ConfigError(f"writer_actors must be an integer >= 0, got {writers!r}")


@dataclass(frozen=True)
class _Plan:
    """What the cluster's resources decide for one job; the rest follows from ``fused`` where it is used.

    ``accelerator_actors == 0``: no accelerator, one CPU pool featurizes and classifies (``fused``). Otherwise each
    inference actor holds one GPU and no CPU (see ``plan_resources``).
    """

    cpu_actors: int
    cpus_per_featurize_actor: float
    accelerator_actors: int
    inference_files_per_batch: int
    max_batch_windows: int
    files_per_shard: int
    device: str
    writer_actors: int  # 0: the driver writes the shards (see _writer_actors)

    @property
    def fused(self) -> bool:
        return self.accelerator_actors == 0

    @property
    def gpus_per_actor(self) -> float:
        """GPUs per inference actor: one, or none in a fused pool."""
        return 0.0 if self.fused else 1.0


# Windows per forward pass on CPU. On one thread musicnn costs 73-76 ms a window in batches of 1 to 4 and
# 103-139 ms in batches of 11 to 44 (its activations outgrow the caches; BENCHMARKS.md); the tiny ViT is
# within ~0.5 ms a window of its best at any size. GPUs keep large batches.
_CPU_BATCH_WINDOWS = 4

# One writer actor per this many CPU actors; a pool no larger than this needs none (the driver writes).
_CPU_ACTORS_PER_WRITER = 16


def _writer_actors(cpu_actors: int) -> int:
    """Writer actors for a pool of ``cpu_actors``: none up to 16, where the driver keeps up and writes the shards
    itself; beyond, one per 16 CPU actors, so object-store uploads of a large cluster are not serialised."""
    return 0 if cpu_actors <= _CPU_ACTORS_PER_WRITER else math.ceil(cpu_actors / _CPU_ACTORS_PER_WRITER)


def _writers(options: JobOptions, cpu_actors: int) -> int:
    """``options.writer_actors`` when set (tests use it to run the writer-actor path on a small machine)."""
    return _writer_actors(cpu_actors) if options.writer_actors is None else options.writer_actors


_FILES_PER_SHARD = 64  # without GPUs, and for the rows --resume recovers from a killed driver's journal


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
            cpu_actors=options.cpu_actors or cpus,
            cpus_per_featurize_actor=1.0,
            accelerator_actors=options.accelerator_actors or gpus,
            inference_files_per_batch=options.inference_files_per_batch or 64,
            max_batch_windows=options.max_batch_windows or 512,
            files_per_shard=options.files_per_shard or options.inference_files_per_batch or _FILES_PER_SHARD,
            device=options.device,
            writer_actors=_writers(options, options.cpu_actors or cpus),
        )
    # CPU only: each actor featurizes its files and classifies them (FeaturizeAndClassify), one per core.
    ignored = [
        f"--{n.replace('_', '-')}" for n in ("accelerator_actors", "inference_files_per_batch") if getattr(options, n)
    ]
    if ignored:
        logger.warning("no GPUs: inference runs inside the CPU actors, so %s do(es) not apply", ", ".join(ignored))
    cpu_actors = options.cpu_actors or cpus
    return _Plan(
        cpu_actors=cpu_actors,
        cpus_per_featurize_actor=cpus / cpu_actors,
        accelerator_actors=0,
        inference_files_per_batch=options.files_per_batch,
        max_batch_windows=options.max_batch_windows or _CPU_BATCH_WINDOWS,
        files_per_shard=options.files_per_shard or _FILES_PER_SHARD,
        device="cpu" if options.device == "auto" else options.device,
        writer_actors=_writers(options, cpu_actors),
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
                    yield _listed(path)
        except FileNotFoundError:
            if _looks_like_file(uri):
                yield {"path": uri, "list_error": f"input file not found: {uri}"}
            else:
                raise


def _listed(path: str) -> dict[str, Any]:
    """The listing's item for ``path``; a local name that is not valid UTF-8 becomes a 'list' error row.

    Python hands such names over with lone surrogates, which Arrow cannot store: left as they are, one
    name would fail its whole block. The row shows the bytes escaped (``\\xff``), the same on every run,
    so ``--resume`` recognises it.
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        shown = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return {"path": shown, "list_error": f"file name is not valid UTF-8: {shown!r}"}
    return {"path": path, "list_error": None}


def _looks_like_file(uri: str) -> bool:
    tail = uri.rstrip("/").rsplit("/", 1)[-1]
    return "." in tail and not uri.endswith("/")


@dataclass(frozen=True)
class _Prepared:
    """What the driver settles before any actor runs: the bundle (configs with the job's overrides, no weights)
    that every stage receives, and the files left to classify."""

    bundle: ModelBundle
    items: list[dict[str, Any]]
    skipped_existing: int


def _prepare(options: JobOptions) -> _Prepared:
    """List the inputs, check the output, check the bundle (and read the output, with ``--resume``). No cluster.

    Raises:
        AcousticSenseError / FileNotFoundError / FileExistsError / ValueError: bad bundle, missing input,
            an output that already holds shards.
    """
    return _settle(options, _list_and_check_output(options))


def _list_and_check_output(options: JobOptions) -> list[dict[str, Any]]:
    """The inputs' items, once the output is known to be usable: the checks that need neither Ray nor torch.

    Raises:
        FileNotFoundError / FileExistsError / PermissionError / ConnectionError: missing input, an output that
            already holds shards, refused or unreachable storage.
    """
    items = list(_list_inputs(options))
    if not items:
        raise FileNotFoundError(f"no files found under {options.inputs}")
    with reaching(options.output):
        _prepare_output(options.output, options.storage_options, options.overwrite, options.resume)
    return items


def _settle(options: JobOptions, items: list[dict[str, Any]]) -> _Prepared:
    """Check the bundle (its config only: the weights are read by the inference actors) and, with ``--resume``,
    drop the items that already have a row for its version and feature config."""
    from acousticsense import load_bundle  # the model registry imports torch: this runs while Ray starts

    bundle = load_bundle(options.model, options.storage_options, weights=False, overrides=options.overrides())
    skipped = 0
    if options.resume:
        with reaching(options.output):
            # Rows a killed driver journaled become shard rows first: they count as done, not as work to redo.
            recover_journal(options.output, options.storage_options, options.files_per_shard or _FILES_PER_SHARD)
            done = completed_paths(options.output, options.storage_options, bundle.version, bundle.feature_hash)
        remaining = [item for item in items if item["path"] not in done]
        skipped, items = len(items) - len(remaining), remaining
    return _Prepared(bundle, items, skipped)


def run_classification(options: JobOptions, *, progress: bool = True) -> JobSummary:
    """Run the job on the current Ray cluster (``ray.init`` must have been called) and return its summary.

    Raises:
        AcousticSenseError / FileNotFoundError: bad model bundle, missing input folder.
    """
    started = time.perf_counter()
    return _run(options, _prepare(options), progress=progress, started=started)


def _run(options: JobOptions, prepared: _Prepared, *, progress: bool, started: float) -> JobSummary:
    """Classify ``prepared.items`` on the connected cluster; the summary's wall time counts from ``started``."""
    plan = plan_resources(options, ray.cluster_resources())
    items = prepared.items
    tables = _stream(options, plan, prepared.bundle, items, progress) if items else []
    summary = summarize(
        pa.concat_tables(tables) if tables else None,
        wall_s=time.perf_counter() - started,
        expected_files=len(items),
        output=options.output,
        model_version=prepared.bundle.version,
        feature_hash=prepared.bundle.feature_hash,
        plan=asdict(plan),
        skipped_existing=prepared.skipped_existing,
    )
    return _write_summary(options, summary)


# A job with at most this many batches per actor sends each actor one batch at a time (see _pool).
_FEW_BATCHES_PER_ACTOR = 8


def _pool(actors: int, batches: int) -> ActorPoolStrategy:
    """A fixed pool of ``actors`` for ``batches`` batches.

    Ray Data queues up to two tasks on an actor. In a small job the first actor to finish starting takes
    two batches while the others still import torch, and with the default model a 4-file batch is ~5 s of
    CPU: 10 files ran on one of two actors (BENCHMARKS.md). With few batches per actor each actor gets one
    at a time; larger jobs keep the queue, which hides the round trip between an actor's tasks (~45 ms
    measured, a third of a fast model's 4-file batch) and whose start-up imbalance the job's length absorbs.
    """
    one_at_a_time = batches <= _FEW_BATCHES_PER_ACTOR * actors
    return ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=1 if one_at_a_time else None)


def _stream(
    options: JobOptions, plan: _Plan, bundle: ModelBundle, items: list[dict[str, Any]], progress: bool
) -> list[pa.Table]:
    """Featurize, classify and write ``items`` as one streaming Ray Data pipeline; the shards' summary rows."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    ctx.execution_options.verbose_progress = False
    blocks = max(1, min(math.ceil(len(items) / options.files_per_batch), 4096))
    stage_args = (bundle, options.storage_options)
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
            compute=_pool(cpu_pool, blocks),
            num_cpus=plan.cpus_per_featurize_actor,
        )
    else:
        inference_batches = math.ceil(len(items) / plan.inference_files_per_batch)
        accelerator_pool = min(plan.accelerator_actors, inference_batches)
        ds = ds.map_batches(
            FeaturizeFiles,
            fn_constructor_args=stage_args,
            fn_constructor_kwargs=featurize_kwargs,
            batch_size=options.files_per_batch,
            batch_format="pyarrow",
            compute=_pool(cpu_pool, blocks),
            num_cpus=plan.cpus_per_featurize_actor,
        )
        ds = ds.map_batches(
            ClassifyWindows,
            fn_constructor_args=stage_args,
            # No CPU reserved (see plan_resources): one torch thread, the GPU does the work.
            fn_constructor_kwargs=classify_kwargs | dict(torch_threads=1),
            batch_size=plan.inference_files_per_batch,
            batch_format="pyarrow",
            compute=_pool(accelerator_pool, inference_batches),
            num_cpus=0,
            num_gpus=plan.gpus_per_actor,
        )
    writers = _writers(options, cpu_pool)
    if not writers:
        # The driver waits for the rows anyway: it writes the shards itself (committed whole under their content
        # names) instead of starting a writer process that would compete with the actors' start-up on a small
        # node, and journals each block as it arrives, so a killed driver loses only what the actors still hold.
        shards = JournaledShards(options.output, options.storage_options, plan.files_per_shard)
        # No prefetch: a block fetched ahead is one more block a killed driver loses, and handing one to the
        # journal's thread takes microseconds while an actor's block takes seconds.
        blocks_in = iter(ds.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=0))
        try:
            for block in blocks_in:
                shards.add(block)
        except BaseException:
            shards.stop()  # what reached the driver stays journaled for --resume
            raise
        finally:
            # A failed write (full disk, store gone) stops the pipeline and its actors now: left open, it would
            # keep classifying into a dead end until the process exits.
            blocks_in.close()  # type: ignore[attr-defined]  # a generator
        return shards.close()

    # Large pools: writing is light I/O, on long-lived actors that hold no CPU (they never wait for one the
    # pools hold), one per 16 CPU actors so object-store uploads run side by side.
    ds = ds.map_batches(
        WriteShards,
        fn_constructor_args=(options.output, options.storage_options),
        batch_size=plan.files_per_shard,
        batch_format="pyarrow",
        compute=ActorPoolStrategy(size=writers),
        num_cpus=0,
    )
    return list(ds.iter_batches(batch_format="pyarrow", batch_size=None))


def _write_summary(options: JobOptions, summary: JobSummary) -> JobSummary:
    fs, root = filesystem(options.output, options.storage_options)
    with reaching(options.output), fs.open(join_uri(root, "_summary.json"), "w") as f:
        json.dump(summary.to_dict(), f, indent=2)
    return summary


def completed_paths(output: str, storage_options: Mapping[str, Any], model_version: str, feature_hash: str) -> set[str]:
    """Paths that already have a row in a committed shard under ``output`` for this model version and feature config.

    Only ``part-*.parquet`` shards count (shards in progress have hidden names; ``--resume`` commits the journal
    a killed driver left before it asks), and only the three columns needed are read.
    """
    table = committed_rows(output, storage_options)
    same = pc.and_(pc.equal(table["model_version"], model_version), pc.equal(table["feature_hash"], feature_hash))
    return set(table.filter(same).column("path").to_pylist())


def _prepare_output(output: str, storage_options: Mapping[str, Any], overwrite: bool, resume: bool) -> None:
    """Refuse to mix a new run's rows with an old run's, unless asked to replace them or to resume (not both:
    ``JobOptions`` refuses that). An old run's rows are its shards and, if its driver was killed, its journal."""
    fs, root = filesystem(output, storage_options)
    exists = fs.exists(root)
    shards = fs.glob(join_uri(root, "part-*.parquet")) if exists else []
    journaled = bool(fs.glob(join_uri(root, JOURNAL, "*"))) if exists else False
    if (shards or journaled) and not (overwrite or resume):
        held = f"{len(shards)} prediction shard(s)" + (" and the journal of a killed run" if journaled else "")
        raise FileExistsError(
            f"{output} already holds {held}; pass --resume to finish that run, --overwrite to replace it, "
            "or choose another --output"
        )
    if overwrite and (shards or journaled):
        if old := shards + fs.glob(join_uri(root, "_summary.json")):
            fs.rm(old)
        if journaled:
            fs.rm(join_uri(root, JOURNAL), recursive=True)
    if is_remote(output):
        check_writable(output, storage_options)  # a missing bucket fails now, not after the whole job
    else:
        fs.makedirs(root, exist_ok=True)


def _parse_storage_option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        # Not echoed: a value given without its key (`--storage-option SECRET`) would land in terminals and logs.
        raise argparse.ArgumentTypeError("--storage-option wants key=value (got a value without '=')")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)  # numbers, booleans, JSON objects
    except json.JSONDecodeError:
        return key, value


class _Parser(argparse.ArgumentParser):
    """Names the shipped bundles in ``--help`` only: the core's bundle module imports torch (~2 s)."""

    def format_help(self) -> str:
        from acousticsense import DEFAULT_BUNDLE, NAMED_BUNDLES

        names = ", ".join(NAMED_BUNDLES)
        for action in self._actions:
            if action.dest == "model":
                action.help = f"a shipped bundle ({names}) or a bundle folder / URI (default: {DEFAULT_BUNDLE})"
        return super().format_help()


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
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
    p.add_argument("--model", metavar="BUNDLE", help="a shipped bundle or a bundle folder / URI")
    p.add_argument(
        "--storage-option",
        action="append",
        default=[],
        type=_parse_storage_option,
        metavar="KEY=VALUE",
        help="fsspec option, e.g. endpoint_url=http://127.0.0.1:8333 (repeatable); S3 retries and timeouts go in "
        "config_kwargs (JSON; default: 5 attempts in botocore's standard mode, 5 s connect, 30 s read timeout)",
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
    p.add_argument("--max-batch-windows", type=int, help="windows per forward pass (default 512 GPU / 4 CPU)")
    p.add_argument(
        "--files-per-shard",
        type=int,
        help="rows per Parquet shard, the unit --resume keeps (default: the GPU inference batch, 64)",
    )
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--precision", default="auto", choices=PRECISIONS)
    p.add_argument(
        "--features-on",
        default="cpu",
        choices=["cpu", "accelerator", "gpu"],
        help="where STFT + mel run: CPU actors (default), or the inference actors (CPU actors then only decode);"
        " 'gpu' is another name for 'accelerator'",
    )
    p.add_argument("--cache", metavar="URI", help="spectrogram cache (folder or URI): unchanged files skip features")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (pays off on GPUs, long jobs)")
    _add_override_flags(p.add_argument_group("overrides of the bundle's config (the service's args of the same names)"))
    p.add_argument("--overwrite", action="store_true", help="replace predictions already under --output")
    p.add_argument(
        "--resume",
        action="store_true",
        help="skip files that already have a row under --output for this model version and feature config",
    )
    p.add_argument("--no-progress", action="store_true", help="hide Ray Data's progress bars")
    p.add_argument(
        "--dashboard",
        action="store_true",
        help="local runs: start Ray's dashboard too (off by default, it costs seconds of start-up; a cluster's "
        "dashboard is untouched)",
    )
    return p


def _add_override_flags(group: argparse._ArgumentGroup, overrides: Mapping[str, Override] = OVERRIDES) -> None:
    """One flag per declared override (``acousticsense.options.OVERRIDES``); ``--x/--no-x`` for a switch.

    Every default is ``None``: an absent flag keeps the bundle's value, whatever the bundle holds.
    """
    for o in overrides.values():
        if o.kind is bool:
            group.add_argument(o.flag, action=argparse.BooleanOptionalAction, default=None, help=o.help)
        else:
            metavar = None if o.choices else {int: "N", float: "X"}.get(o.kind, "TEXT")
            group.add_argument(o.flag, type=o.kind, choices=o.choices, default=None, metavar=metavar, help=o.help)


def options_from_args(args: argparse.Namespace) -> JobOptions:
    """The parsed flags as ``JobOptions``, which checks them.

    Raises:
        ConfigError: a bad value or combination (``main`` prints it as ``error: …``, exit status 2).
    """
    extensions = None
    if args.extensions:
        extensions = frozenset(e.strip().lower().lstrip(".") for e in args.extensions.split(",") if e.strip())
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
        overwrite=args.overwrite,
        resume=args.resume,
        features_on=args.features_on,
        cache=args.cache,
        **{name: getattr(args, name) for name in OVERRIDES},
    )


def connect_ray(*, dashboard: bool = False) -> bool:
    """Join the cluster in ``RAY_ADDRESS`` (as under ``ray job submit``), or start a local Ray.

    A local Ray starts without the dashboard unless ``dashboard``: a one-shot job has nobody to show it to,
    and its processes cost about 4 CPU-seconds of a 2-core machine's start-up (BENCHMARKS.md). Joining a
    cluster leaves its dashboard as it is.

    Returns:
        True when this call connected (or started) Ray, False when the process was already connected.

    Raises:
        ValueError: ``RAY_ADDRESS`` is the dashboard's HTTP address, which jobs are submitted to, not joined.
    """
    address = os.environ.get("RAY_ADDRESS", "")
    if address.startswith(("http://", "https://")):
        raise ValueError(
            f"RAY_ADDRESS={address} is the dashboard's job API: submit with `ray job submit --address {address} "
            "-- python -m pipelines.classify ...`, or unset RAY_ADDRESS to run on a local Ray"
        )
    if ray.is_initialized():
        return False
    # include_dashboard only applies when Ray starts here; joining a cluster ignores it.
    ray.init(logging_level="WARNING", include_dashboard=dashboard)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    connected = False
    try:
        options = options_from_args(args)
        # A missing input or an output that holds shards fails here, before Ray starts (milliseconds locally).
        items = _list_and_check_output(options)
        # The bundle check (the core's model registry imports torch, ~2 s) and a --resume read need no cluster
        # either: they run while Ray starts, and the job's clock starts once both are done.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare") as pool:
            pending = pool.submit(_settle, options, items)
            connected = connect_ray(dashboard=args.dashboard)
            started = time.perf_counter()
            prepared = pending.result()
        summary = _run(options, prepared, progress=not args.no_progress, started=started)
        print(summary.table(), flush=True)
    except (AcousticSenseError, OSError, ValueError) as e:
        # Bad bundle, missing input or bucket, refused credentials, existing output: say what, no traceback.
        print(f"error: {type(e).__name__}: {e}" if isinstance(e, OSError) else f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if connected:
            # Now rather than at exit: Ray's exit hook first sleeps 0.5 s for worker logs, which the finished
            # job no longer sends. A local Ray stops; a cluster is only disconnected from.
            ray.shutdown()
    return 0


def _exit(status: int) -> None:
    """Exit without the interpreter's teardown of torch's and Ray's modules (~1 s on 2 cores, after the job is done).

    Ray is stopped and every shard and the summary are closed by then; the exit handlers still run (logging,
    Ray's own, fsspec's), and the streams are flushed: only the freeing of memory the process is about to give
    back is skipped.
    """
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    _exit(main())
