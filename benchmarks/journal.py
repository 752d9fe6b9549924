"""What the driver's journal costs: the same rows written as whole shards alone, and through the journal.

    python -m benchmarks.journal [--files 1024] [--files-per-batch 4] [--files-per-shard 64]
        [--output URI] [--storage-option key=value ...] [--repeats 3]

Rows shaped like the default model's (16 genre probabilities, 100 tags, the top 5) arrive in blocks of
``--files-per-batch``, as the actors hand them to the driver. Each repeat writes them three ways, in turn,
under ``--output`` (a temporary folder unless given; an ``s3://`` prefix with ``--storage-option
client_kwargs='{"endpoint_url": ...}'`` measures an object store): ``write_shard`` per ``--files-per-shard``
rows (no journal); ``JournaledShards`` with each block journaled alone (a job whose actors are slower than a
write: the journal's full per-block cost); and ``JournaledShards`` fed all blocks at once (a job whose blocks
outpace the writes: group commit). Prints the milliseconds per block of each and the extra over no journal.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from typing import Any

import numpy as np
import pyarrow as pa

from acousticsense import filesystem, join_uri
from pipelines._schema import OUTPUT_SCHEMA
from pipelines._write import JournaledShards, write_shard
from pipelines.classify import _parse_storage_option


def _blocks(files: int, per_block: int) -> list[pa.Table]:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(files):
        probabilities = rng.dirichlet(np.ones(16)).astype(np.float32)
        rows.append(
            {
                "path": f"s3://catalog/music/{i // 1000:04d}/track {i:07d}.mp3",
                "status": "ok",
                "model_version": "musicnn-msd-mtt@1",
                "feature_hash": "0123456789abcdef",
                "top_genre": "Jazz",
                "confidence": float(probabilities.max()),
                "top_k": [{"genre": f"genre {k}", "confidence": 0.1} for k in range(5)],
                "probabilities": probabilities.tolist(),
                "tags": [{"tag": f"tag {k}", "score": float(s)} for k, s in enumerate(rng.random(100))],
                "needs_review": False,
                "duration_s": 210.0,
                "windows": 10,
                **{f"{stage}_s": 0.01 for stage in ("read", "decode", "resample", "features", "inference")},
            }
        )
    table = pa.Table.from_pylist(rows, schema=OUTPUT_SCHEMA)
    return [table.slice(start, per_block) for start in range(0, files, per_block)]


def _shards_only(blocks: list[pa.Table], uri: str, options: dict[str, Any], per_shard: int) -> None:
    rows = pa.concat_tables(blocks)
    for start in range(0, rows.num_rows, per_shard):
        write_shard(rows.slice(start, per_shard), uri, options)


def _journaled_one_at_a_time(blocks: list[pa.Table], uri: str, options: dict[str, Any], per_shard: int) -> None:
    """Each block journaled alone before the next arrives: the job's case when actors are slower than a write."""
    writer = JournaledShards(uri, options, per_shard)
    for block in blocks:
        writer._journal(block)  # what the writer thread does with a block that arrived alone
    writer.close()


def _journaled_in_a_burst(blocks: list[pa.Table], uri: str, options: dict[str, Any], per_shard: int) -> None:
    """Blocks handed over as fast as the driver can: the ones that queue during a write share the next piece."""
    writer = JournaledShards(uri, options, per_shard)
    for block in blocks:
        writer.add(block)
    writer.close()


_WRITERS = {
    "shards only": _shards_only,
    "journal, one block at a time": _journaled_one_at_a_time,
    "journal, blocks in a burst": _journaled_in_a_burst,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.journal", description=__doc__.split("\n")[0])
    p.add_argument("--files", type=int, default=1024)
    p.add_argument("--files-per-batch", type=int, default=4)
    p.add_argument("--files-per-shard", type=int, default=64)
    p.add_argument("--output", default=None, help="a folder or URI to write under (default: a temporary folder)")
    p.add_argument("--storage-option", action="append", default=[], type=_parse_storage_option)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    options = dict(args.storage_option)
    blocks = _blocks(args.files, args.files_per_batch)
    with tempfile.TemporaryDirectory() as tmp:
        base = args.output or tmp
        seconds: dict[str, list[float]] = {name: [] for name in _WRITERS}
        for _ in range(args.repeats):
            for name, write in _WRITERS.items():
                uri = join_uri(base, f"bench-{uuid.uuid4().hex[:8]}")
                t0 = time.perf_counter()
                write(blocks, uri, options, args.files_per_shard)
                seconds[name].append(time.perf_counter() - t0)
                fs, root = filesystem(uri, options)
                fs.rm(root, recursive=True)
    per_block = {name: 1e3 * statistics.median(s) / len(blocks) for name, s in seconds.items()}
    for name, ms in per_block.items():
        print(f"{name:>28}: {ms:7.2f} ms per {args.files_per_batch}-file block (median of {args.repeats})")
    extra = {name: ms - per_block["shards only"] for name, ms in per_block.items() if name != "shards only"}
    for name, ms in extra.items():
        print(f"{name:>28}: {ms:+7.2f} ms per block over shards only, {ms / args.files_per_batch:+.2f} ms per file")
    print(json.dumps({"blocks": len(blocks), "ms_per_block": per_block, "extra_ms_per_block": extra}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
