"""The journal benchmark: both writers run side by side on the same rows and leave nothing behind."""

from __future__ import annotations

import json

import pyarrow as pa

from benchmarks.journal import _blocks, main


def test_rows_arrive_in_blocks_of_the_batch_size_with_the_output_schema():
    blocks = _blocks(10, 4)
    assert [b.num_rows for b in blocks] == [4, 4, 2]
    rows = pa.concat_tables(blocks)
    assert len(set(rows.column("path").to_pylist())) == 10
    assert all(len(tags) == 100 for tags in rows.column("tags").to_pylist())


def test_the_benchmark_times_both_writers_and_cleans_up(tmp_path, capsys):
    assert main(["--files", "40", "--files-per-shard", "16", "--repeats", "1", "--output", str(tmp_path)]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["blocks"] == 10
    per_block = figures["ms_per_block"]
    assert set(per_block) == {"shards only", "journal, one block at a time", "journal, blocks in a burst"}
    assert min(per_block.values()) > 0
    extra = figures["extra_ms_per_block"]
    assert set(extra) == set(per_block) - {"shards only"}
    assert all(extra[name] == per_block[name] - per_block["shards only"] for name in extra)
    assert list(tmp_path.iterdir()) == []  # each run's shards and journal removed
