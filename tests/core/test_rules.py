import itertools
import subprocess
import sys

import numpy as np
import pytest

from acousticsense.config import GENRES
from acousticsense.rules import MusicDescriptors, apply_rules, describe, rule_weights

SR = 22050


def _click_track(bpm: float, seconds: float = 20.0) -> np.ndarray:
    """Sharp clicks with a short 60 Hz thump on every beat: strong, fast pulse and a heavy low end."""
    out = np.zeros(int(seconds * SR), np.float32)
    t = np.arange(int(0.03 * SR)) / SR
    click = np.sin(2 * np.pi * 1500 * t) * np.exp(-t / 0.005) + 0.8 * np.sin(2 * np.pi * 60 * t) * np.exp(-t / 0.02)
    for start in np.arange(0.0, seconds - 0.05, 60.0 / bpm):
        i = int(start * SR)
        out[i : i + t.size] += 0.5 * click.astype(np.float32)
    return out


def _soft_pad(seconds: float = 20.0) -> np.ndarray:
    """A sustained A-major chord swelling slowly: no pulse, no low end."""
    t = np.arange(int(seconds * SR)) / SR
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6, 440.0))
    swell = 0.6 + 0.4 * np.sin(2 * np.pi * 0.1 * t)
    noise = 0.001 * np.random.default_rng(0).standard_normal(t.size)
    return (0.05 * chord * swell + noise).astype(np.float32)


@pytest.fixture(scope="module")
def descriptors() -> dict[str, MusicDescriptors]:
    return {
        "clicks": describe(_click_track(170.0), SR),
        "pad": describe(_soft_pad(), SR),
        "silence": describe(np.zeros(5 * SR, np.float32), SR),
    }


def _weight(weights: np.ndarray, label: str) -> float:
    return float(weights[GENRES.index(label)])


def test_describe_measures_pulse_tempo_and_low_end(descriptors):
    clicks, pad = descriptors["clicks"], descriptors["pad"]
    assert any(abs(clicks.tempo_bpm - bpm) / bpm < 0.05 for bpm in (170.0, 85.0, 340.0))
    assert clicks.beat_strength > 2.0 > 1.6 > pad.beat_strength
    assert clicks.low_frequency_share > 0.5 > 0.01 > pad.low_frequency_share
    assert descriptors["silence"] == MusicDescriptors(0.0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("hz", "low_share", "vocal"),
    [(60.0, 1.0, 0.0), (1000.0, 0.0, 1.0), (5000.0, 0.0, 0.0)],  # below 150 Hz; in the 300-3400 Hz voice band; above
)
def test_a_pure_tone_puts_all_its_power_where_its_frequency_is(hz, low_share, vocal):
    """A steady sine is all low end or none, and all harmonic: its voice-band share is 1 inside the band, else 0."""
    t = np.arange(5 * SR) / SR
    d = describe((0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32), SR)
    assert d.low_frequency_share == pytest.approx(low_share, abs=1e-3)
    assert d.vocal_presence == pytest.approx(vocal, abs=1e-2)


def test_fast_strong_beat_favours_metal_and_soft_pad_favours_classical_and_folk(descriptors):
    clicks = rule_weights(descriptors["clicks"], GENRES)
    assert _weight(clicks, "Metal") > 1.0 > _weight(clicks, "Classical")
    assert _weight(clicks, "Electronic") > _weight(clicks, "Metal")  # fast and a heavy low end
    pad = rule_weights(descriptors["pad"], GENRES)
    assert _weight(pad, "Classical") > _weight(pad, "Metal")
    assert _weight(pad, "Folk") > _weight(pad, "Metal")
    np.testing.assert_array_equal(rule_weights(descriptors["silence"], GENRES), np.ones(len(GENRES)))


def test_slow_tempo_with_a_clear_beat_favours_slow_genres():
    slow = MusicDescriptors(tempo_bpm=70.0, beat_strength=2.5, low_frequency_share=0.35, vocal_presence=0.3)
    w = rule_weights(slow, GENRES)
    assert min(_weight(w, g) for g in ("Blues", "Reggae", "R&B")) > 1.0 > _weight(w, "Metal")
    # The same tempo estimate without a pulse is ignored: Metal loses nothing for tempo.
    beatless = rule_weights(MusicDescriptors(70.0, 1.0, 0.35, 0.3), GENRES)
    assert _weight(beatless, "Metal") == pytest.approx(1.0)


def test_weights_are_one_at_strength_zero_and_bounded_otherwise():
    grid = itertools.product((0.0, 60.0, 120.0, 200.0), (0.5, 1.0, 2.0, 8.0), (0.0, 0.35, 1.0), (0.0, 0.3, 1.0))
    for tempo, beat, low, vocal in grid:
        d = MusicDescriptors(tempo, beat, low, vocal)
        np.testing.assert_array_equal(rule_weights(d, GENRES, strength=0.0), np.ones(len(GENRES), np.float32))
        w = rule_weights(d, GENRES)
        assert w.shape == (len(GENRES),) and w.dtype == np.float32
        assert np.all(w >= 0.7 - 1e-6) and np.all(w <= 1.4 + 1e-6)
        np.testing.assert_allclose(rule_weights(d, GENRES, strength=2.0), w.astype(np.float64) ** 2, rtol=1e-5)
    with pytest.raises(ValueError):
        rule_weights(MusicDescriptors(120.0, 2.0, 0.3, 0.3), GENRES, strength=-1.0)


def test_unknown_labels_get_one_and_order_follows_labels():
    d = MusicDescriptors(tempo_bpm=175.0, beat_strength=3.0, low_frequency_share=0.6, vocal_presence=0.1)
    w = rule_weights(d, ["Polka", "Metal", "Classical", "Sea shanty"])
    assert w[0] == 1.0 and w[3] == 1.0
    assert w[1] > 1.0 > w[2]
    full = rule_weights(d, GENRES)
    assert w[1] == _weight(full, "Metal") and w[2] == _weight(full, "Classical")


def test_apply_rules_renormalises_and_keeps_order_under_uniform_weights():
    probs = np.array([0.5, 0.3, 0.15, 0.05], np.float32)
    same = apply_rules(probs, np.full(4, 1.3))
    np.testing.assert_allclose(same, probs, rtol=1e-6)
    assert list(np.argsort(-same)) == list(np.argsort(-probs))
    moved = apply_rules(probs, np.array([0.7, 1.4, 1.0, 1.0]))
    assert moved.dtype == np.float32 and moved.sum() == pytest.approx(1.0, abs=1e-6)
    assert moved[1] > probs[1] and moved[0] < probs[0]
    batch = apply_rules(np.stack([probs, probs[::-1]]), np.array([0.7, 1.4, 1.0, 1.0]))
    np.testing.assert_allclose(batch.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(batch[0], moved)
    with pytest.raises(ValueError):
        apply_rules(probs, np.ones(3))


def test_describe_checks_input_and_handles_short_audio():
    with pytest.raises(ValueError):
        describe(np.zeros((2, SR), np.float32), SR)
    short = describe(_click_track(120.0, seconds=0.2), SR)
    assert all(np.isfinite([short.tempo_bpm, short.beat_strength, short.low_frequency_share, short.vocal_presence]))


def test_importing_rules_does_not_import_librosa():
    code = "import sys, acousticsense.rules; print('librosa' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
