"""Odd entries in an input folder: a FIFO, symlink loops, names with newlines, quotes and bytes that are not UTF-8.

Each listed entry leaves exactly one row (ok or error) with every option on, the job never blocks on the FIFO nor
walks the loop forever, and nothing the inputs name makes the job write outside ``--output`` and ``--cache``.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.conftest import write_audio

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# Entries made under the input folder (bytes names: one is not valid UTF-8) -> the row they must leave.
GOOD_NAMES = [b"new\nline.wav", b"quote\"d 'name'.wav", b"semi;colon $(x) `y`.wav", b"dots...and -dash.wav"]
BAD_UTF8 = b"bad \xff\xfe name.wav"
FIFO = b"pipe.wav"
SELF_LOOP = b"self.wav"  # a symlink to itself: ELOOP on open
DIR_LOOP = b"sub/up"  # a symlink to its own parent folder
JOB_DEADLINE_S = 240  # far above the ~15 s it takes: only a hang reaches it

SHARD = re.compile(r"part-[0-9a-f]{24}\.parquet|_summary\.json")
CACHE_ENTRY = re.compile(r"[0-9a-f]{2}/[0-9a-f]{40}\.npz")


@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("odd")
    folder = root / "in"
    for i, name in enumerate(GOOD_NAMES + [BAD_UTF8]):
        # Written under a plain name, then renamed: libsndfile cannot open a name that is not UTF-8.
        write_audio(folder / "clip.wav", 1.5, 16000, 1, frequency_hz=300 + 40 * i, seed=i)
        os.rename(folder / "clip.wav", bytes(folder) + b"/" + name)
    os.mkfifo(bytes(folder) + b"/" + FIFO)
    os.symlink(b"self.wav", bytes(folder) + b"/" + SELF_LOOP)
    (folder / "sub").mkdir()
    os.symlink(b"..", bytes(folder) + b"/" + DIR_LOOP)
    return folder


def _run_with_deadline(options) -> object:
    """The job in a thread: a FIFO read or an endless walk fails the test at the deadline instead of hanging it."""
    from pipelines.classify import run_classification

    result: dict[str, object] = {}

    def target() -> None:
        try:
            result["summary"] = run_classification(options, progress=False)
        except BaseException as e:  # noqa: BLE001 - re-raised in the test's thread
            result["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(JOB_DEADLINE_S)
    assert not thread.is_alive(), f"the job did not end within {JOB_DEADLINE_S} s (blocked on the FIFO or a loop?)"
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["summary"]


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def _options(odd_folder: Path, tiny_bundle: str, **extra: Any):
    """The job over the odd folder with every option on, writing next to it."""
    from pipelines.classify import JobOptions

    work = odd_folder.parent
    return JobOptions(
        inputs=[str(odd_folder)],
        output=str(work / "out"),
        model=tiny_bundle,
        cache=str(work / "cache"),
        rules=True,
        enhance="both",
        segments=3,
        files_per_batch=2,
        **extra,
    )


@pytest.fixture(scope="module")
def odd_job(local_ray, tiny_bundle, odd_folder):
    work = odd_folder.parent
    before = _tree(work)
    summary = _run_with_deadline(_options(odd_folder, tiny_bundle))
    rows = {Path(r["path"]).relative_to(odd_folder).as_posix(): r for r in pq.read_table(work / "out").to_pylist()}
    return summary, rows, before, work


def test_every_odd_entry_leaves_exactly_one_row(odd_job):
    summary, rows, _, _ = odd_job
    expected = {os.fsdecode(n) for n in GOOD_NAMES} | {"bad \\xff\\xfe name.wav", "pipe.wav", "self.wav", "sub/up"}
    assert set(rows) == expected
    assert (summary.files, summary.missing_rows) == (len(expected), 0)


def test_odd_but_valid_names_are_classified(odd_job):
    _, rows, _, _ = odd_job
    for name in GOOD_NAMES:
        row = rows[os.fsdecode(name)]
        assert row["status"] == "ok", row["error"]
        assert row["top_genre"] and row["segments"] >= 1  # a 1.5 s clip holds one 10 s excerpt


def test_unreadable_entries_are_error_rows_that_say_why(odd_job):
    _, rows, _, _ = odd_job
    assert rows["bad \\xff\\xfe name.wav"]["error_stage"] == "list"
    assert "not valid UTF-8" in rows["bad \\xff\\xfe name.wav"]["error"]
    assert (rows["pipe.wav"]["error_stage"], rows["sub/up"]["error_stage"]) == ("read", "read")
    assert "a FIFO" in rows["pipe.wav"]["error"]
    assert "a folder" in rows["sub/up"]["error"]  # the loop is one entry, never walked into
    assert rows["self.wav"]["error_stage"] == "read"
    assert "symbolic links" in rows["self.wav"]["error"]  # ELOOP: "Too many levels of symbolic links"


def test_nothing_is_written_outside_output_and_cache(odd_job):
    _, _, before, work = odd_job
    created = _tree(work) - before
    outside = {p for p in created if p.split("/")[0] not in ("out", "cache")}
    assert not outside
    assert all(SHARD.fullmatch(p) for p in _tree(work / "out")), _tree(work / "out")
    entries = {p for p in _tree(work / "cache") if not (work / "cache" / p).is_dir()}
    assert entries and all(CACHE_ENTRY.fullmatch(p) for p in entries), entries


def test_resume_recognises_the_escaped_name(odd_job, tiny_bundle, odd_folder):
    """The non-UTF-8 name's row is found again by --resume: nothing is added twice."""
    _, rows, _, work = odd_job
    summary = _run_with_deadline(_options(odd_folder, tiny_bundle, resume=True))
    assert (summary.skipped_existing, summary.files) == (len(rows), 0)
    assert pq.read_table(work / "out").num_rows == len(rows)
