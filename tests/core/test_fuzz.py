"""Hostile bytes through the core's decode + featurize: the bad-file zoo, every codec-frame cut, a seeded fuzz corpus.

The contract under test: for any bytes, :func:`acousticsense.audio.decode_segments` and
:func:`~acousticsense.audio.audio_info` either return or raise the core's :class:`AcousticSenseError`, and
:class:`~acousticsense.extract.ExcerptFeaturizer` (the batch job's and the service's CPU stage, every option
on) either returns finite windows or raises :class:`StageError`, never through its last-resort
``except Exception`` (which would mean some decoder's own exception type escaped the core's checks).
Memory stays bounded: headers that claim gigabytes are refused before anything is allocated.
"""

from __future__ import annotations

import contextlib
import io
import resource
import sys
from collections import Counter

import av
import numpy as np
import pytest

from acousticsense import load_bundle
from acousticsense.audio import audio_info, decode_segments
from acousticsense.errors import AcousticSenseError, StageError
from acousticsense.extract import ExcerptFeaturizer
from tests.badfiles import ZOO, BadFile, mutations, valid_seeds

pytestmark = pytest.mark.slow  # ~10 s on an idle 2-core machine: the rule layer JITs its beat tracker once

# Every option the job has that changes the CPU stage: the rule layer, both enhancements, three segments.
ALL_OPTIONS = {"rules": True, "enhance": "both", "segments": 3}
MUTANTS = 300
MAX_RSS_GROWTH_MB = 256  # the process may grow by this much over the whole corpus, no more


@pytest.fixture(scope="module")
def featurizer() -> ExcerptFeaturizer:
    bundle = load_bundle("synthetic-tiny", weights=False).with_overrides(**ALL_OPTIONS)
    return ExcerptFeaturizer(bundle.features, torch_threads=1, labels=bundle.genres)


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _outcome(featurizer: ExcerptFeaturizer, data: bytes) -> tuple[str, str]:
    """("ok" | "error", message) through the core's public calls; anything else fails the test.

    The raw decoders must raise only the core's error type; the featurizer only :class:`StageError`, and
    a decode-stage one must come from the core's own checks, not from its catch-all for foreign types.
    """
    for probe in (lambda: audio_info(io.BytesIO(data)), lambda: decode_segments(io.BytesIO(data), featurizer.config)):
        with contextlib.suppress(AcousticSenseError):  # anything else propagates and fails the test
            probe()
    try:
        features = featurizer(io.BytesIO(data))
    except StageError as e:
        cause = e.__cause__
        assert cause is None or isinstance(cause, AcousticSenseError) or e.stage != "decode", (
            f"a {type(cause).__name__} escaped the decoders: {e}"
        )
        return "error", f"{e.stage}: {e}"
    assert features.windows.ndim == 3 and features.windows.shape[0] >= 1
    assert np.isfinite(features.windows).all()
    assert sum(features.segment_windows) == features.windows.shape[0]
    return "ok", ""


@pytest.mark.parametrize("case", ZOO, ids=[c.name for c in ZOO])
def test_every_zoo_case_gets_its_outcome_and_a_message_naming_the_problem(featurizer, case: BadFile):
    status, message = _outcome(featurizer, case.data)
    assert status == case.expected, message
    if status == "error":
        assert any(word in message.lower() for word in case.problem), message
        assert "Error:" not in message.split(":", 1)[1][:40], f"a foreign exception type leads the message: {message}"


def test_a_seeded_mutation_corpus_raises_only_the_core_errors_in_bounded_memory(featurizer):
    """300 mutants of five valid files (WAV, float WAV, FLAC, OGG, MP3): 0 uncaught, bounded RSS."""
    before = _peak_rss_mb()
    counts: Counter[str] = Counter()
    for _, data in mutations(MUTANTS):
        status, _ = _outcome(featurizer, data)
        counts[status] += 1
    growth = _peak_rss_mb() - before
    print(f"\nfuzz corpus: {dict(counts)} of {MUTANTS}; peak RSS {_peak_rss_mb():.0f} MB (+{growth:.0f} MB)")
    assert sum(counts.values()) == MUTANTS
    assert counts["ok"] > 0 and counts["error"] > 0, counts  # the corpus exercises both paths
    assert growth < MAX_RSS_GROWTH_MB


def _packet_cuts(data: bytes) -> list[int]:
    """The byte offset of every packet (codec frame) the demuxer finds, past the first."""
    with av.open(io.BytesIO(data), "r") as box:
        positions = {int(p.pos) for p in box.demux(box.streams.audio[0]) if p.pos is not None and p.pos > 0}
    return sorted(positions)


@pytest.mark.parametrize("name", ["seed.mp3", "seed.ogg", "seed.flac"])
def test_a_file_cut_at_every_codec_frame_boundary_is_decoded_or_refused(featurizer, name: str):
    """A cut never fails outside the core's errors, and what decodes is never longer than the original."""
    data = valid_seeds()[name]
    full = audio_info(io.BytesIO(data)).duration_s
    cuts = _packet_cuts(data)
    assert len(cuts) >= 2, cuts  # (Ogg: the demuxer reports page starts)
    counts: Counter[str] = Counter()
    for cut in cuts:
        try:
            decoded = decode_segments(io.BytesIO(data[:cut]), featurizer.config)
        except AcousticSenseError:
            counts["error"] += 1
            continue
        counts["ok"] += 1
        assert decoded[0].info.duration_s <= full + 0.05
        assert all(np.isfinite(d.waveform).all() for d in decoded)
    print(f"\n{name}: {len(cuts)} cuts, {dict(counts)}")
    assert counts["error"] > 0  # the earliest cuts (headers only) cannot be audio
