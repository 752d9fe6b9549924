"""Shard writing: whole Parquet shards under ``part-*`` names, and the driver's journal that makes a killed
driver lose only the rows still on the actors.

The driver writes shards itself (:class:`JournaledShards`) while the CPU pool has at most 16 actors; larger
pools add :class:`WriteShards` actors. Kept apart from ``_stages`` so neither the driver nor a writer actor's
process imports torch for it.

Layout under ``--output``::

    part-<content hash>.parquet      whole shards, the job's rows (what readers and ``--resume`` read)
    _journal/piece-<hash>.arrow      rows that reached the driver but no shard yet (Arrow IPC); gone when a job ends
    _summary.json

Parquet readers (pyarrow, Ray Data, Spark, pandas) skip names that start with ``_`` or ``.``, so the journal
and a shard being written are never read as output.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import threading
import time
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from acousticsense import filesystem, is_remote, join_uri, reaching
from pipelines._metrics import observe_stages

__all__ = ["JOURNAL", "JournaledShards", "WriteShards", "committed_rows", "recover_journal", "write_shard"]

JOURNAL = "_journal"
SUMMARY_COLUMNS = ("path", "status", "error_stage", "top_genre", "needs_review", "duration_s", "windows")
SUMMARY_TAGS = 3  # each file's best tags that the end-of-job summary counts


class WriteShards:
    """Writer actors for large pools: one Parquet shard per ``--files-per-shard`` rows; returns their summary columns
    plus ``write_s``.

    Long-lived actors rather than tasks: a task with ``num_cpus=0`` gets a fresh worker process
    whenever Ray has reaped the idle one, and each new worker used to import torch again (measured:
    nine worker starts, ~23 CPU-seconds, in a 200-file job on 2 cores).
    """

    def __init__(self, output_uri: str, storage_options: Mapping[str, Any]) -> None:
        self.output_uri = output_uri
        self.storage_options = dict(storage_options)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return write_shard(batch, self.output_uri, self.storage_options)


class JournaledShards:
    """The driver's writer: every block of rows is made durable as soon as it arrives, and whole shards of
    ``files_per_shard`` rows are committed from them.

    Blocks go to the journal first (small Arrow IPC files under ``_journal/``); once the journaled rows fill a
    shard, the shard is committed under its ``part-*`` name and the journal pieces it wholly holds are
    deleted. A driver killed at any point has lost only the blocks not yet journaled: the next ``--resume``
    commits what the journal holds (:func:`recover_journal`) instead of classifying it again. Shards keep
    exactly ``files_per_shard`` rows (the last one fewer), as without the journal.

    The writing runs on one thread of its own, so the driver goes on taking blocks from Ray Data while a
    piece is written; the blocks that arrive meanwhile go into the next piece together (a group commit), so
    an object store's per-request latency bounds how far the journal lags, not the job's throughput.

    A crash between a shard's commit and its pieces' deletion leaves rows in both places;
    :func:`recover_journal` drops journaled rows that a shard already holds, so no row is ever written twice.
    """

    _QUEUED_BLOCKS = 64  # blocks waiting for the writer thread before add() waits: bounds the driver's memory

    def __init__(self, output_uri: str, storage_options: Mapping[str, Any], files_per_shard: int) -> None:
        self.output_uri = output_uri
        self.storage_options = dict(storage_options)
        self.files_per_shard = files_per_shard
        self._queue: queue.Queue[pa.Table | str] = queue.Queue(maxsize=self._QUEUED_BLOCKS)
        self._pending: list[tuple[str, pa.Table]] = []  # (journal piece, its rows not yet in a shard)
        self._pending_rows = 0
        self._journal_s = 0.0  # journal time not yet charged to a shard's write_s
        self._summaries: list[pa.Table] = []
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="journal", daemon=True)
        self._thread.start()

    def add(self, block: pa.Table) -> None:
        """Hand ``block`` to the writer thread (waits while it is ``_QUEUED_BLOCKS`` behind).

        Raises:
            OSError: an earlier write failed (a full disk, an unreachable store); nothing more is written.
        """
        self._raise_failure()
        if block.num_rows:
            self._queue.put(block)

    def close(self) -> list[pa.Table]:
        """Write what is queued, commit the rows left (the last, shorter shard) and remove the journal.

        Returns:
            The summary columns of every shard committed, in order.

        Raises:
            OSError: a write failed; what was journaled stays for ``--resume``.
        """
        self._finish(_CLOSE)
        self._raise_failure()
        return self._summaries

    def stop(self) -> None:
        """Journal what is queued and stop, committing no partial shard: the job failed, and ``--resume``
        will commit the journal. Write failures are not raised (the job's own error is)."""
        self._finish(_STOP)

    def _finish(self, how: str) -> None:
        self._queue.put(how)
        self._thread.join()

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            while not self._queue.empty():  # group commit: every block that arrived during the last write
                items.append(self._queue.get_nowait())
            blocks = [item for item in items if isinstance(item, pa.Table)]
            last = items[-1]  # a close or stop comes last: nothing is added after it
            try:
                if blocks and self._error is None:
                    self._journal(pa.concat_tables(blocks))
                if last is _CLOSE and self._error is None:
                    if self._pending_rows:
                        self._commit(self._pending_rows)
                    _remove_journal(self.output_uri, self.storage_options)
            except BaseException as e:  # noqa: BLE001 - raised in the driver's thread by add() or close()
                self._error = e
            if last is _CLOSE or last is _STOP:
                return

    def _journal(self, rows: pa.Table) -> None:
        """Make ``rows`` durable as one journal piece, then commit every shard they complete."""
        t0 = time.perf_counter()
        name = _content_name("piece", rows, ".arrow")
        _write(rows, self.output_uri, self.storage_options, join_uri(JOURNAL, name))
        self._journal_s += time.perf_counter() - t0
        self._pending.append((name, rows))
        self._pending_rows += rows.num_rows
        while self._pending_rows >= self.files_per_shard:
            self._commit(self.files_per_shard)

    def _commit(self, rows: int) -> None:
        """Commit the first ``rows`` pending rows as one shard, then delete the pieces it wholly holds."""
        taken: list[pa.Table] = []
        finished: list[str] = []
        need = rows
        while need:
            name, table = self._pending[0]
            take = min(need, table.num_rows)
            taken.append(table.slice(0, take))
            need -= take
            if take == table.num_rows:
                finished.append(name)
                self._pending.pop(0)
            else:  # the piece stays on disk until its last row is in a shard
                self._pending[0] = (name, table.slice(take))
        self._pending_rows -= rows
        # The shard's rows carry the journal's time too: write_s is everything it took to make them durable.
        journal_s, self._journal_s = self._journal_s, 0.0
        self._summaries.append(
            write_shard(pa.concat_tables(taken), self.output_uri, self.storage_options, journal_s=journal_s / rows)
        )
        t0 = time.perf_counter()
        _delete(self.output_uri, self.storage_options, [join_uri(JOURNAL, name) for name in finished])
        self._journal_s += time.perf_counter() - t0  # charged to the next shard


_CLOSE, _STOP = "close", "stop"  # what the driver tells the writer thread after its last block


def recover_journal(output_uri: str, storage_options: Mapping[str, Any], files_per_shard: int) -> int:
    """Commit the rows a killed driver journaled but never put in a shard, and remove the journal.

    Rows a committed shard already holds (a crash between a shard's commit and its pieces' deletion) are
    dropped, as are rows journaled twice, so the output never holds a file twice for one model version and
    feature config. Also removes temporaries a kill left mid-write. Safe to repeat: a crash inside this call
    leaves a state the next call recovers from.

    Returns:
        How many journaled rows became shard rows.
    """
    fs, root = filesystem(output_uri, storage_options)
    pieces = sorted(fs.glob(join_uri(root, JOURNAL, "piece-*.arrow"))) if fs.exists(root) else []
    recovered = 0
    if pieces:
        journaled = pa.concat_tables([_read_piece(fs, piece) for piece in pieces], promote_options="default")
        done = set(_keys(committed_rows(output_uri, storage_options)))
        keep = []
        for i, key in enumerate(_keys(journaled)):
            if key not in done:
                done.add(key)
                keep.append(i)
        rows = journaled.take(pa.array(keep, pa.int64()))
        for start in range(0, rows.num_rows, files_per_shard):
            write_shard(rows.slice(start, files_per_shard), output_uri, storage_options)
        recovered = rows.num_rows
    _remove_journal(output_uri, storage_options)
    if not is_remote(output_uri):
        for temporary in fs.glob(join_uri(root, ".*.inprogress")):
            with contextlib.suppress(FileNotFoundError):
                fs.rm(temporary)
    return recovered


_KEY = ("path", "model_version", "feature_hash")  # one row per file for each model version and feature config


def committed_rows(output_uri: str, storage_options: Mapping[str, Any]) -> pa.Table:
    """The ``path``, ``model_version`` and ``feature_hash`` of every row in a committed shard under ``output_uri``.

    Only ``part-*`` shards count: a shard being written has a hidden name, and journaled rows are committed
    by :func:`recover_journal` first.
    """
    fs, root = filesystem(output_uri, storage_options)
    shards = fs.glob(join_uri(root, "part-*.parquet")) if fs.exists(root) else []
    if not shards:
        return pa.table({c: pa.array([], pa.string()) for c in _KEY})
    return pq.ParquetDataset(shards, filesystem=fs).read(columns=list(_KEY))


def write_shard(
    batch: pa.Table, output_uri: str, storage_options: Mapping[str, Any], *, journal_s: float = 0.0
) -> pa.Table:
    """Write one Parquet shard under ``output_uri`` and return its summary columns plus ``write_s``.

    ``journal_s``: seconds per file already spent journaling these rows, counted in ``write_s`` and in the
    write stage's metric (one observation per shard either way).

    Local shards are written under a temporary name and renamed, so a half-written file is never
    mistaken for a complete one; an S3 object only appears once its upload completes.
    """
    t0 = time.perf_counter()
    # Named by content: a retried task rewrites the same shard instead of adding a duplicate one, while
    # the same files under another model version or feature config get shards of their own.
    _write(batch, output_uri, storage_options, _content_name("part", batch))
    write_s = time.perf_counter() - t0
    summary = batch.select(list(SUMMARY_COLUMNS) + ["read_s", "decode_s", "resample_s", "features_s", "inference_s"])
    per_file = write_s / max(1, batch.num_rows) + journal_s
    observe_stages({"write": per_file})
    summary = summary.append_column("top_tags", pc.list_slice(batch.column("tags"), 0, SUMMARY_TAGS))
    return summary.append_column("write_s", pa.array([per_file] * batch.num_rows, pa.float32()))


def _content_name(prefix: str, batch: pa.Table, suffix: str = ".parquet") -> str:
    """``<prefix>-<hash><suffix>``, the hash over the rows' model version, feature hash and paths."""
    first = batch.slice(0, 1).to_pylist()[0] if batch.num_rows else {}
    key = [first.get("model_version") or "", first.get("feature_hash") or "", *batch.column("path").to_pylist()]
    return f"{prefix}-{hashlib.sha256(chr(0).join(key).encode()).hexdigest()[:24]}{suffix}"


def _write(batch: pa.Table, output_uri: str, storage_options: Mapping[str, Any], name: str) -> None:
    """Write ``batch`` as ``name`` (a path relative to ``output_uri``): whole or not at all."""
    fs, root = filesystem(output_uri, storage_options)
    if is_remote(output_uri):
        with reaching(join_uri(output_uri, name)), fs.open(join_uri(root, name), "wb") as f:
            _dump(batch, f, name)
    else:
        _write_local(batch, root, name)


def _dump(batch: pa.Table, sink: Any, name: str) -> None:
    """A shard as zstd Parquet; a journal piece as uncompressed Arrow IPC, which writes a 4-row block in a
    tenth of Parquet's time and is only ever read back by :func:`recover_journal`."""
    if name.endswith(".arrow"):
        with pa.ipc.new_file(sink, batch.schema) as writer:
            writer.write_table(batch)
    else:
        pq.write_table(batch, sink, compression="zstd")


def _read_piece(fs: Any, path: str) -> pa.Table:
    with fs.open(path, "rb") as f:
        return pa.ipc.open_file(f).read_all()


def _write_local(batch: pa.Table, root: str, name: str) -> None:
    """Write ``name`` under a hidden temporary and rename it; on failure (a full disk) remove the temporary.

    Only a complete file ever carries its final name (``--resume`` trusts those), and a failed write leaves
    no hidden remains to fill the disk further. The error names the file's path and the cause.
    """
    folder, _, base = join_uri(root, name).rpartition("/")
    os.makedirs(folder, exist_ok=True)
    temporary = join_uri(folder, f".{base}.inprogress")
    final = join_uri(folder, base)
    try:
        # Our own file object: its descriptor is closed even when a write or the final flush fails (a full
        # disk), whatever still references the writer's frames (the journal keeps the error for the driver).
        with open(temporary, "wb") as f:
            _dump(batch, f, name)
        os.replace(temporary, final)
    except OSError as e:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        message = f"cannot write {'shard ' if base.startswith('part-') else ''}{final}: {e}"
        raise (OSError(e.errno, message) if e.errno else OSError(message)) from e


def _delete(output_uri: str, storage_options: Mapping[str, Any], names: list[str]) -> None:
    if names:
        fs, root = filesystem(output_uri, storage_options)
        with reaching(output_uri):
            fs.rm([join_uri(root, name) for name in names])


def _remove_journal(output_uri: str, storage_options: Mapping[str, Any]) -> None:
    fs, root = filesystem(output_uri, storage_options)
    journal = join_uri(root, JOURNAL)
    with reaching(output_uri):
        if fs.exists(journal):
            fs.rm(journal, recursive=True)


def _keys(table: pa.Table) -> list[tuple[str, str, str]]:
    return list(zip(*(table.column(c).to_pylist() for c in _KEY), strict=True))
