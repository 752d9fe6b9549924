"""Faults during a 300-file job on a real two-node Ray cluster: SIGKILL of a fused actor and of a writer actor,
loss of a node, SIGKILL of the driver then ``--resume``, and a full disk under ``--output``.

Each run must end with exactly one row per input file, none twice, none lost, and the job's summary must agree.
Kills happen at a point found by polling the output for committed shards, never after a fixed sleep. The
figures (extra wall time against a fault-free run of the same job, files recomputed after the driver's kill) are
printed as ``FAULT-FIGURE`` lines (``pytest -s`` shows them).

The tiny bundle and 1 s clips keep each run to ~10 s on an idle 2-core machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT, write_audio

pytestmark = [pytest.mark.ray, pytest.mark.slow]

FILES = 300
PER_SHARD = 20  # 15 shards: --resume keeps whole shards
JOB_DEADLINE_S = 300  # far above a run's ~15-40 s: only a hang reaches it
OBJECT_STORE = 150 * 2**20


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 one-second clips in three folders (the disk-full test uses one folder)."""
    root = tmp_path_factory.mktemp("corpus")
    for i in range(FILES):
        write_audio(root / f"part{i // 100}" / f"clip {i:03d}.wav", 1.0, 16000, 1, frequency_hz=150 + 3 * i, seed=i)
    return root


@pytest.fixture(scope="module")
def cluster():
    """A head and one worker node, one CPU each: each runs one fused actor. The node-loss test removes the worker."""
    import ray
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": OBJECT_STORE})
    nodes.add_node(num_cpus=1, object_store_memory=OBJECT_STORE)
    ray.init(address=nodes.address, logging_level="ERROR")
    nodes.wait_for_nodes()
    yield nodes
    ray.shutdown()
    nodes.shutdown()


def _options(corpus: Path, tiny_bundle: str, work: Path, **overrides: Any):
    """The job under test, with a fresh cache per run (so that no run is faster for another's).

    ``--rules --enhance both --segments 3`` stay off here: they work inside an actor's per-file loop, which a kill
    does not reach into, and cost ~5 s per 300-file run on 2 cores (9 s -> 14 s); test_odd_inputs and
    test_storage_faults run with every option on.
    """
    from pipelines.classify import JobOptions

    return JobOptions(
        inputs=[str(corpus)],
        output=str(work / "out"),
        model=tiny_bundle,
        files_per_shard=PER_SHARD,
        cache=str(work / "cache"),
        **overrides,
    )


class _Job:
    """``run_classification`` in a thread, so that the test can inject a fault while it runs."""

    def __init__(self, options) -> None:
        from pipelines.classify import run_classification

        self.result: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._target, args=(run_classification, options), daemon=True)
        self.thread.start()

    def _target(self, run: Callable[..., Any], options) -> None:
        try:
            self.result["summary"] = run(options, progress=False)
        except BaseException as e:  # noqa: BLE001 - re-raised by wait()
            self.result["error"] = e

    def wait(self):
        self.thread.join(JOB_DEADLINE_S)
        assert not self.thread.is_alive(), f"the job did not end within {JOB_DEADLINE_S} s"
        if "error" in self.result:
            raise self.result["error"]
        return self.result["summary"]


def _wait_for_shards(output: Path, count: int, running: Callable[[], bool]) -> int:
    """Poll until ``count`` shards are committed under ``output``; fails if the job ends or stalls first."""
    _wait_for(lambda: len(list(output.glob("part-*.parquet"))) >= count, running, f"{count} shards")
    return len(list(output.glob("part-*.parquet")))


def _wait_for(condition: Callable[[], bool], running: Callable[[], bool], what: str = "the fault point") -> None:
    """Poll ``condition`` every 20 ms; fails if the job ends or stalls first."""
    deadline = time.monotonic() + JOB_DEADLINE_S
    while time.monotonic() < deadline:
        if condition():
            return
        assert running(), f"the job ended before {what} (fault point missed)"
        time.sleep(0.02)
    raise AssertionError(f"{what} not reached within {JOB_DEADLINE_S} s")


def _raylets(nodes) -> dict[int, Any]:
    """PID of each live node's raylet -> the node (actor workers are the raylet's children)."""
    return {
        node.all_processes["raylet"][0].process.pid: node
        for node in [nodes.head_node, *nodes.worker_nodes]
        if node.all_processes.get("raylet")
    }


def _stage_workers(nodes, stage: str) -> dict[int, Any]:
    """PID of each of this cluster's actor processes running ``stage`` -> its node (never another Ray's)."""
    raylets = _raylets(nodes)
    found = {}
    for proc in psutil.process_iter(["pid", "ppid", "cmdline"]):
        title = " ".join(proc.info["cmdline"] or [])
        if proc.info["ppid"] in raylets and f"MapBatches({stage})" in title:
            found[proc.info["pid"]] = raylets[proc.info["ppid"]]
    return found


def _kill(pid: int) -> None:
    """SIGKILL ``pid`` and wait until it is gone (its raylet reaps it)."""
    process = psutil.Process(pid)
    process.send_signal(signal.SIGKILL)
    with contextlib.suppress(psutil.NoSuchProcess):
        process.wait(timeout=30)


def _check_rows(output: Path, corpus: Path, summary) -> None:
    """Exactly one ok row per input, in the shards and in the summary; no temporary left behind."""
    table = pq.read_table(output, columns=["path", "status", "error"])
    paths = table.column("path").to_pylist()
    expected = {str(p) for p in corpus.rglob("*.wav")}
    duplicates = len(paths) - len(set(paths))
    lost = len(expected - set(paths))
    assert (duplicates, lost) == (0, 0), f"{duplicates} duplicate rows, {lost} lost"
    assert set(paths) == expected
    errors = [r for r in table.to_pylist() if r["status"] != "ok"]
    assert not errors, errors[:3]
    assert (summary.files, summary.ok, summary.missing_rows) == (len(expected), len(expected), 0)
    assert not list(output.glob(".*")), list(output.glob(".*"))
    assert not (output / "_journal").exists()  # every journaled row is in a shard once the job ends


def _figure(name: str, **values: Any) -> None:
    print(f"FAULT-FIGURE {name}: " + ", ".join(f"{k}={v}" for k, v in values.items()), flush=True)


@pytest.fixture(scope="module")
def baseline(cluster, corpus, tiny_bundle, tmp_path_factory):
    """The same job without a fault, for the extra wall time of each fault."""
    from pipelines.classify import run_classification

    work = tmp_path_factory.mktemp("baseline")
    summary = run_classification(_options(corpus, tiny_bundle, work), progress=False)
    _check_rows(work / "out", corpus, summary)
    _figure("baseline", wall_s=round(summary.wall_s, 2))
    return summary


def _kill_one(cluster, stage: str) -> str:
    """SIGKILL one of this cluster's ``stage`` actors; its process title."""
    workers = _stage_workers(cluster, stage)
    assert workers, f"no {stage} actor found"
    victim = min(workers)
    title = " ".join(psutil.Process(victim).cmdline())
    assert f"MapBatches({stage})" in title and title.count("MapBatches") == 1, title  # that stage and no other
    _kill(victim)
    return title


def test_sigkill_of_a_fused_actor_then_of_a_writer_actor_loses_and_duplicates_nothing(
    cluster, corpus, tiny_bundle, baseline, tmp_path
):
    """One run, two kills: a fused actor once 3 of 15 shards are committed, the writer actor once 6 are.

    ``writer_actors=1`` forces the path that pools of more than 16 actors take (the driver writes otherwise).
    """
    job = _Job(_options(corpus, tiny_bundle, tmp_path, writer_actors=1))
    first = _wait_for_shards(tmp_path / "out", 3, job.thread.is_alive)
    _kill_one(cluster, "FeaturizeAndClassify")
    second = _wait_for_shards(tmp_path / "out", 6, job.thread.is_alive)
    _kill_one(cluster, "WriteShards")
    summary = job.wait()
    _check_rows(tmp_path / "out", corpus, summary)
    assert summary.plan["writer_actors"] == 1 and second < FILES // PER_SHARD  # both kills landed mid-job
    _figure(
        "fused actor + writer actor SIGKILL",
        extra_wall_s=round(summary.wall_s - baseline.wall_s, 2),
        shards_before_kills=(first, second),
    )


def _classify_cli(*args: str) -> subprocess.Popen[str]:
    """``python -m pipelines.classify`` with a local Ray of its own (``RAY_ADDRESS=local``: never this module's)."""
    env = os.environ | {"RAY_ADDRESS": "local", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    command = [sys.executable, "-m", "pipelines.classify", "--no-progress", *args]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_driver_sigkill_then_resume_adds_only_the_missing_rows(cluster, corpus, tiny_bundle, tmp_path):
    from pipelines.classify import run_classification

    options = _options(corpus, tiny_bundle, tmp_path)
    output = tmp_path / "out"
    driver = _classify_cli(
        *("--input", str(corpus), "--output", options.output, "--model", tiny_bundle, "--cache", options.cache),
        *("--files-per-shard", str(PER_SHARD)),
    )
    try:
        _wait_for_shards(output, FILES // PER_SHARD // 2, lambda: driver.poll() is None)
        # Mid-shard: some rows journaled since the last commit, which the kill must not lose.
        _wait_for(lambda: any((output / "_journal").glob("piece-*")), lambda: driver.poll() is None)
        ray_processes = psutil.Process(driver.pid).children(recursive=True)
        logs = _session_logs(ray_processes)
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.communicate(timeout=30)
    orphans = _outliving(ray_processes, logs)
    # What the kill left on disk, read before the resume: the committed shards, the rows the driver had journaled
    # since the last one, and the files whose features reached the cache (by the cache's own key of each input).
    shards_at_kill = _shard_stats(output)
    committed_paths = pq.read_table(output, columns=["path"]).column("path").to_pylist()
    journaled = [row for piece in sorted((output / "_journal").glob("piece-*")) for row in _rows_of_piece(piece)]
    durable = set(committed_paths) | {row["path"] for row in journaled}
    inputs = {str(p) for p in corpus.rglob("*.wav")}
    cached = _cached_inputs(tmp_path / "cache", tiny_bundle, inputs)
    featurized = len(list((tmp_path / "cache").rglob("*.npz")))  # every file the killed run featurized

    resumed = run_classification(dataclasses.replace(options, resume=True), progress=False)

    final = {row["path"]: row for row in pq.read_table(output).to_pylist()}
    paths = pq.read_table(output, columns=["path"]).column("path").to_pylist()
    added = pq.read_table(
        [str(output / name) for name in _shard_stats(output) if name not in shards_at_kill], columns=["path"]
    )
    recomputed = featurized - len(durable)  # work the kill threw away: featurized, in no shard and no journal
    _figure(
        "driver SIGKILL + --resume",
        rows_in_shards_at_kill=len(committed_paths),
        rows_journaled_at_kill=len(journaled),
        files_featurized_at_kill=featurized,
        files_recomputed=recomputed,
        rerun_files=resumed.files,
        ray_processes_outliving_driver=sorted(orphans),
    )
    assert len(paths) == len(set(paths)) == FILES and set(paths) == inputs
    assert {row["status"] for row in final.values()} == {"ok"}
    half = FILES // PER_SHARD // 2 * PER_SHARD
    assert len(committed_paths) % PER_SHARD == 0 and half <= len(committed_paths) < FILES  # whole shards; mid-job
    assert len(set(committed_paths)) == len(committed_paths)  # the killed run committed no file twice
    # The resume leaves the committed shards as they were; its new shards hold exactly the files without one.
    assert {name: _shard_stats(output)[name] for name in shards_at_kill} == shards_at_kill
    added_paths = added.column("path").to_pylist()
    assert len(added_paths) == len(set(added_paths)) and set(added_paths) == inputs - set(committed_paths)
    # Journaled rows are committed as they were written, not classified again (the row is the same to the bit,
    # timings included), and the resume counts them as done.
    assert all(final[row["path"]] == row for row in journaled)
    assert (resumed.skipped_existing, resumed.files, resumed.missing_rows) == (len(durable), FILES - len(durable), 0)
    assert not (output / "_journal").exists()
    # The cache holds exactly the files the killed run featurized, and every durable row was featurized first:
    # what the kill threw away is the featurized files that had no durable row yet.
    assert len(cached) == featurized and durable <= cached
    assert recomputed == len(cached - durable)
    # Thrown away: only the batches the actors were running or had finished but not yet handed to the driver
    # (2 actors x 4 files, plus what Ray Data buffers): at most one shard's worth, the bound.
    assert recomputed <= PER_SHARD
    # The raylet, GCS and workers die with the driver; Ray's two agents see the raylet die at once but wait up to
    # 60 s on the dead GCS (they publish the death with a fixed timeout) before they exit. Nothing else outlives it.
    assert set(orphans) <= {"ray::DashboardAgent", "ray::RuntimeEnvAgent"}, orphans


_AGENT_LOGS = {"ray::DashboardAgent": "dashboard_agent.log", "ray::RuntimeEnvAgent": "runtime_env_agent.log"}


def _outliving(ray_processes: list[psutil.Process], logs: Path) -> dict[str, str]:
    """The processes of a killed driver's local Ray still alive after 15 s -> the log line where each noticed
    the raylet's death.

    Each one left is stopped here, by PID, once its log shows that it has noticed and is exiting; one that had
    not would be a leak, and the test fails.
    """
    _, alive = psutil.wait_procs(ray_processes, timeout=15)
    found: dict[str, str] = {}
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            name = proc.name()
            text = (logs / _AGENT_LOGS[name]).read_text(errors="replace") if name in _AGENT_LOGS else ""
            noticed = [line for line in text.splitlines() if "The parent is dead" in line or "Raylet is dead" in line]
            assert noticed, f"{name} (pid {proc.pid}) outlives the driver without noticing the raylet's death"
            found[name] = noticed[0]
            proc.kill()
    return found


def _session_logs(processes: list[psutil.Process]) -> Path:
    """The log folder of the local Ray these processes belong to (from the GCS server's ``--log_dir``)."""
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            for arg in proc.cmdline():
                if arg.startswith("--log_dir="):
                    return Path(arg.split("=", 1)[1])
    raise AssertionError("no process of the driver's Ray names its log folder")


def _rows_of_piece(piece: Path) -> list[dict[str, Any]]:
    """The rows of one journal piece (Arrow IPC, as ``pipelines._write`` writes them)."""
    with pa.ipc.open_file(piece) as reader:
        return reader.read_all().to_pylist()


def _shard_stats(output: Path) -> dict[str, tuple[int, int]]:
    """Each committed shard's name -> (size, mtime in ns): a shard rewritten or replaced changes one of them."""
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(output.glob("part-*.parquet"))}


def _cached_inputs(cache: Path, bundle_uri: str, inputs: set[str]) -> set[str]:
    """The inputs whose features are in the cache at ``cache``, looked up by the key the job stores them under."""
    from acousticsense import load_bundle
    from acousticsense.cache import SpectrogramCache

    store = SpectrogramCache(str(cache), load_bundle(bundle_uri).feature_hash)
    return {path for path in inputs if (cache / (key := store.key(path))[:2] / f"{key}.npz").exists()}


@pytest.fixture
def full_disk(tmp_path: Path):
    """A 128 KiB tmpfs: a real ENOSPC after a few shards. Skipped where mounting is not permitted."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_full_disk_fails_clearly_and_leaves_only_whole_shards(cluster, corpus, tiny_bundle, full_disk, capsys):
    """The CLI's entry point in-process (on this module's cluster): exit status 2 and one line naming the shard."""
    from pipelines.classify import main

    output = full_disk / "out"
    status = main(
        ["--input", str(corpus / "part0"), "--output", str(output), "--model", tiny_bundle, "--no-progress"]
        + ["--files-per-shard", "4", "--segments", "3"]
    )
    err = capsys.readouterr().err
    messages = [line for line in err.splitlines() if line.startswith("error:")]  # Ray logs to stderr in-process
    assert status == 2 and len(messages) == 1, err
    err = messages[0]
    # The shard or the journal piece that did not fit, by its path under --output.
    assert err.startswith("error: OSError: [Errno 28] cannot write "), err
    assert f" {output}/part-" in err or f" {output}/_journal/piece-" in err, err
    assert "No space left on device" in err, err
    assert not list(output.rglob(".*")), list(output.rglob(".*"))  # no temporary left to fill the disk
    shards = list(output.glob("part-*.parquet"))
    assert shards  # the disk filled mid-job, after whole shards
    assert sum(pq.read_table(s).num_rows for s in shards) == 4 * len(shards)  # each one complete
    _figure("disk full", whole_shards=len(shards), message=err[:200])


def test_loss_of_the_node_running_featurization_loses_and_duplicates_nothing(
    cluster, corpus, tiny_bundle, baseline, tmp_path
):
    """The worker node goes (its raylet and actors SIGKILLed) mid-job; the job ends on the head node alone.

    Last in the module: it leaves the cluster with one node.
    """
    job = _Job(_options(corpus, tiny_bundle, tmp_path))
    committed = _wait_for_shards(tmp_path / "out", 3, job.thread.is_alive)
    worker = next(iter(cluster.worker_nodes))
    featurizing = {node.node_id for node in _stage_workers(cluster, "FeaturizeAndClassify").values()}
    assert worker.node_id in featurizing, "the worker node runs no featurization actor"
    cluster.remove_node(worker, allow_graceful=False)
    summary = job.wait()
    _check_rows(tmp_path / "out", corpus, summary)
    assert committed < FILES // PER_SHARD
    _figure("node loss", extra_wall_s=round(summary.wall_s - baseline.wall_s, 2), shards_before=committed)
