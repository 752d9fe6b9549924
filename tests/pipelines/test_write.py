"""The driver's shard writer and its journal, on a local folder and on a real S3 (SeaweedFS): whole shards of
``files_per_shard`` rows, every row durable once it reaches the driver, and a killed writer's rows recovered by
``--resume`` exactly once, wherever the kill falls."""

from __future__ import annotations

import threading
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from acousticsense import filesystem, join_uri
from pipelines._schema import OUTPUT_SCHEMA
from pipelines._write import JOURNAL, JournaledShards, committed_rows, recover_journal, write_shard
from pipelines.classify import _prepare_output


def _block(first: int, count: int, version: str = "v1") -> pa.Table:
    """``count`` ok rows for files ``first``..``first + count - 1``, with the output schema."""
    rows = [
        {
            "path": f"/music/track {i:03d}.wav",
            "status": "ok",
            "model_version": version,
            "feature_hash": "f1",
            "top_genre": "Jazz",
            "needs_review": False,
            "duration_s": 30.0,
            "windows": 10,
            "tags": [],
            **{f"{stage}_s": 0.01 for stage in ("read", "decode", "resample", "features", "inference")},
        }
        for i in range(first, first + count)
    ]
    return pa.Table.from_pylist(rows, schema=OUTPUT_SCHEMA)


@pytest.fixture(params=["local", "s3"])
def output(request, tmp_path) -> tuple[str, dict[str, Any]]:
    """An output URI and its storage options: a local folder, or a fresh prefix in a real SeaweedFS bucket."""
    if request.param == "local":
        return str(tmp_path / "out"), {}
    seaweed = request.getfixturevalue("seaweed")
    bucket = seaweed.make_bucket("journal")
    return f"{bucket}/{request.node.name.replace('[', '-').rstrip(']')}", seaweed.storage_options()


def _shards(uri: str, options: dict[str, Any]) -> list[pa.Table]:
    fs, root = filesystem(uri, options)
    return [pq.read_table(path, filesystem=fs) for path in sorted(fs.glob(join_uri(root, "part-*.parquet")))]


def _journal(uri: str, options: dict[str, Any]) -> list[str]:
    fs, root = filesystem(uri, options)
    return sorted(fs.glob(join_uri(root, JOURNAL, "*")))


def _paths(tables: list[pa.Table]) -> list[str]:
    return [path for table in tables for path in table.column("path").to_pylist()]


def test_rows_are_journaled_on_arrival_and_committed_in_whole_shards(output):
    uri, options = output
    writer = JournaledShards(uri, options, files_per_shard=5)
    writer.add(_block(0, 3))
    writer.add(_block(3, 3))
    writer.stop()  # as a failed job stops it: what arrived is durable, but no partial shard is committed
    assert [t.num_rows for t in _shards(uri, options)] == [5]  # 6 rows: one whole shard of 5...
    assert _journal(uri, options)  # ...and the sixth only in the journal, which --resume commits
    assert recover_journal(uri, options, files_per_shard=5) == 1

    uri = uri + "-closed"
    writer = JournaledShards(uri, options, files_per_shard=5)
    for b in range(4):
        writer.add(_block(3 * b, 3))
    summaries = writer.close()
    assert [t.num_rows for t in summaries] == [5, 5, 2]
    assert min(w for t in summaries for w in t.column("write_s").to_pylist()) > 0  # journal time included
    shards = _shards(uri, options)
    assert sorted(_paths(shards)) == [f"/music/track {i:03d}.wav" for i in range(12)]
    assert sorted(t.num_rows for t in shards) == [2, 5, 5]
    assert _journal(uri, options) == []  # a finished job leaves no journal


@pytest.mark.parametrize("blocks", [1, 2, 3, 4])
def test_a_killed_writers_journal_is_committed_once_by_resume(output, blocks):
    """The writer stops after 1-4 blocks of 3 rows, 5 per shard, and the driver dies without closing it."""
    uri, options = output
    writer = JournaledShards(uri, options, files_per_shard=5)
    for b in range(blocks):
        writer.add(_block(3 * b, 3))
    writer.stop()
    in_shards = _paths(_shards(uri, options))
    assert len(in_shards) == 3 * blocks // 5 * 5  # every shard the rows filled, and no other

    recovered = recover_journal(uri, options, files_per_shard=5)

    assert recovered == 3 * blocks - len(in_shards)  # every journaled row not yet in a shard, nothing else
    paths = _paths(_shards(uri, options))
    assert sorted(paths) == [f"/music/track {i:03d}.wav" for i in range(3 * blocks)]  # each once
    assert _journal(uri, options) == []
    assert recover_journal(uri, options, files_per_shard=5) == 0  # a second resume finds nothing to do
    assert sorted(_paths(_shards(uri, options))) == sorted(paths)


def test_a_kill_between_a_shards_commit_and_its_pieces_deletion_writes_no_row_twice(output):
    uri, options = output
    fs, root = filesystem(uri, options)
    block = _block(0, 4)
    writer = JournaledShards(uri, options, files_per_shard=10)
    writer.add(block)
    writer.add(_block(4, 2))
    writer.stop()  # six rows journaled, none in a shard...
    write_shard(block, uri, options)  # ...but four committed, as if the kill came before their piece was deleted
    leftover = join_uri(root, ".part-0123.parquet.inprogress")
    if "://" not in uri:  # a local temporary a kill can leave mid-write (S3 uploads appear whole or not at all)
        fs.pipe(leftover, b"half a shard")

    assert recover_journal(uri, options, files_per_shard=10) == 2
    assert sorted(_paths(_shards(uri, options))) == [f"/music/track {i:03d}.wav" for i in range(6)]
    assert not fs.exists(leftover)


def test_journaled_rows_of_another_model_version_are_kept_apart(output):
    """One row per file *per model version and feature config*: the same path under another version is kept."""
    uri, options = output
    write_shard(_block(0, 3, version="v1"), uri, options)
    writer = JournaledShards(uri, options, files_per_shard=10)
    writer.add(_block(0, 3, version="v2"))
    writer.stop()

    assert recover_journal(uri, options, files_per_shard=10) == 3
    rows = committed_rows(uri, options)
    assert sorted(zip(rows["path"].to_pylist(), rows["model_version"].to_pylist())) == sorted(
        (f"/music/track {i:03d}.wav", v) for i in range(3) for v in ("v1", "v2")
    )


def test_a_new_run_refuses_a_killed_runs_journal_and_overwrite_removes_it(output):
    uri, options = output
    writer = JournaledShards(uri, options, files_per_shard=10)
    writer.add(_block(0, 2))  # a run killed before its first shard: only a journal
    writer.stop()

    with pytest.raises(FileExistsError, match=r"journal of a killed run.*--resume"):
        _prepare_output(uri, options, overwrite=False, resume=False)
    _prepare_output(uri, options, overwrite=False, resume=True)  # --resume keeps it for recover_journal
    assert len(_journal(uri, options)) == 1
    _prepare_output(uri, options, overwrite=True, resume=False)
    assert _journal(uri, options) == [] and _shards(uri, options) == []


def test_blocks_that_arrive_during_a_slow_write_share_the_next_piece(tmp_path, monkeypatch):
    """Group commit: while one piece is being written (an object store's round trip), the driver keeps handing
    blocks over, and they are journaled together in one piece instead of one write each."""
    from pipelines import _write

    uri = str(tmp_path / "out")
    writing, release = threading.Event(), threading.Event()
    pieces: list[int] = []
    write = _write._write

    def slow_first_piece(batch, output_uri, storage_options, name):
        if name.startswith(JOURNAL):
            pieces.append(batch.num_rows)
            if len(pieces) == 1:
                writing.set()
                assert release.wait(30)
        write(batch, output_uri, storage_options, name)

    monkeypatch.setattr(_write, "_write", slow_first_piece)
    writer = JournaledShards(uri, {}, files_per_shard=100)
    writer.add(_block(0, 2))
    assert writing.wait(30)  # the writer thread has taken the first block alone and is writing it
    for b in range(1, 4):
        writer.add(_block(2 * b, 2))  # never waits on the slow write
    release.set()
    assert [t.num_rows for t in writer.close()] == [8]
    assert pieces == [2, 6]  # the first block alone, then the three that queued behind it


def test_a_failed_write_fails_the_next_call_and_keeps_what_was_journaled(tmp_path, monkeypatch):
    from pipelines import _write

    uri = str(tmp_path / "out")
    write = _write._write
    calls = []
    first_written = threading.Event()

    def full_disk_on_the_second_piece(batch, output_uri, storage_options, name):
        calls.append(name)
        if len(calls) == 2:
            raise OSError(28, f"cannot write {name}: No space left on device")
        write(batch, output_uri, storage_options, name)
        first_written.set()

    monkeypatch.setattr(_write, "_write", full_disk_on_the_second_piece)
    writer = JournaledShards(uri, {}, files_per_shard=100)
    writer.add(_block(0, 2))
    assert first_written.wait(30)  # journaled alone, before any other block arrives
    with pytest.raises(OSError, match="No space left"):
        writer.add(_block(2, 2))  # hands the block over; the write fails in the writer thread
        for b in range(2, 200):  # the failure surfaces at a later call, never a hang
            writer.add(_block(2 * b, 2))
    with pytest.raises(OSError, match="No space left"):
        writer.close()
    monkeypatch.setattr(_write, "_write", write)
    assert recover_journal(uri, {}, files_per_shard=100) == 2  # the first block, journaled before the failure
