"""The classify job over the whole bad-file zoo with every option on: one row per file, each with its outcome.

One job run (``--rules --enhance both --segments 3 --cache DIR``, the tiny test bundle) on a real local
Ray, through the CLI entry point. Every zoo file (NaN/Inf/huge float samples, silence, DC, one sample,
0 Hz / 1 Hz / 4 GHz headers, headers claiming gigabytes, 64 channels, a huge ID3 tag, video containers,
FLAC cut at every frame boundary...) must end as exactly one row: a prediction when it is valid audio,
an error row naming the problem otherwise.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from acousticsense import GENRES
from tests.badfiles import write_zoo

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def zoo_job(local_ray, tiny_bundle, tmp_path_factory):
    from pipelines.classify import main

    root = tmp_path_factory.mktemp("zoo")
    cases = write_zoo(root / "zoo")
    output = root / "predictions"
    argv = [
        "--input", str(root / "zoo"),
        "--output", str(output),
        "--model", tiny_bundle,
        "--rules", "--enhance", "both", "--segments", "3",
        "--cache", str(root / "cache"),
        "--files-per-batch", "4",
        "--no-progress",
    ]  # fmt: skip
    code = main(argv)
    table = pq.read_table(output)
    return code, cases, table.to_pylist(), root / "zoo"


def test_the_spectrogram_cache_holds_the_valid_files_and_nothing_of_the_bad_ones(zoo_job):
    _, cases, _, folder = zoo_job
    entries = list((folder.parent / "cache").rglob("*.npz"))
    assert len(entries) == sum(case.expected == "ok" for case in cases.values())  # all distinct bytes


def test_every_zoo_file_is_exactly_one_row(zoo_job):
    code, cases, rows, folder = zoo_job
    assert code == 0
    names = [Path(r["path"]).relative_to(folder).as_posix() for r in rows]
    assert sorted(names) == sorted(cases), set(names) ^ set(cases)
    assert len(names) == len(set(names)) == len(cases)  # no file lost, none twice


def test_each_file_gets_its_expected_status_and_a_message_that_names_the_problem(zoo_job):
    _, cases, rows, folder = zoo_job
    wrong = []
    for row in rows:
        case = cases[Path(row["path"]).name]
        if row["status"] != case.expected:
            wrong.append((case.name, case.expected, row["status"], row.get("error")))
            continue
        if case.expected == "ok":
            assert row["top_genre"] in GENRES and row["error"] is None, row
            assert 1 <= len(row["segment_genres"]) <= 3
        else:
            message = (row["error"] or "").lower()
            assert row["error_stage"] == "decode", row
            assert any(word in message for word in case.problem), (case.name, row["error"])
    assert not wrong, wrong
    errors = sum(r["status"] == "error" for r in rows)
    print(f"\nzoo job: {len(rows)} rows for {len(cases)} files, {errors} error rows")
