import numpy as np
import pytest
import torch

from acousticsense.enhance import compress_dynamic_range, estimate_noise, spectral_subtraction

SR = 22050
N_FFT = 1024
HOP = 256
TONE_HZ = 1000.0
TONE_BIN = round(TONE_HZ * N_FFT / SR)
TONE_BINS = slice(TONE_BIN - 3, TONE_BIN + 4)  # the Hann main lobe and a little leakage


def _power(x: np.ndarray) -> torch.Tensor:
    """(..., samples) -> (..., freq, frames) STFT power, framed exactly like LogMel."""
    wave = torch.as_tensor(x, dtype=torch.float32)
    spec = torch.stft(
        wave.reshape(-1, wave.shape[-1]),
        n_fft=N_FFT,
        hop_length=HOP,
        window=torch.hann_window(N_FFT),
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    power = spec.real.square() + spec.imag.square()
    return power.reshape(*wave.shape[:-1], *power.shape[-2:])


def _tone(seconds: float, amplitude: float, hz: float = TONE_HZ) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return amplitude * np.sin(2 * np.pi * hz * t)


def _notes(seconds: float, amplitude: float, on_s: float = 0.5, off_s: float = 0.5) -> np.ndarray:
    """Tone bursts with silent rests: music-like, so some frames hold only the background."""
    period = int((on_s + off_s) * SR)
    gate = (np.arange(int(seconds * SR)) % period) < int(on_s * SR)
    return _tone(seconds, amplitude) * gate


def _snr_db(power: torch.Tensor) -> float:
    tone = power[..., TONE_BINS, :].sum()
    return float(10 * torch.log10(tone / (power.sum() - tone)))


def test_spectral_subtraction_raises_snr_of_tone_in_white_noise():
    rng = np.random.default_rng(0)
    x = _notes(4.0, 0.3) + 0.1 * rng.standard_normal(4 * SR)
    before = _power(x)
    after = spectral_subtraction(before)
    assert _snr_db(after) > _snr_db(before) + 4.0  # about +5.5 dB with the defaults
    # The tone itself survives (its bins lose at most the noise that was in them, and a little more).
    assert after[TONE_BINS].sum() > 0.9 * before[TONE_BINS].sum()


def test_spectral_subtraction_leaves_clean_music_with_rests_nearly_unchanged():
    # Clean notes that decay in the rests (no noise floor): the quietest frames are the tails, ~50 dB down.
    note = np.concatenate([_tone(0.6, 0.5), _tone(0.4, 0.5) * np.exp(-np.arange(int(0.4 * SR)) / (0.04 * SR))])
    power = _power(np.tile(note, 4))
    after = spectral_subtraction(power)
    assert float(after.sum() / power.sum()) == pytest.approx(1.0, abs=0.02)
    assert float(after[TONE_BINS].sum() / power[TONE_BINS].sum()) == pytest.approx(1.0, abs=0.02)


def test_steady_sound_over_the_whole_excerpt_is_treated_as_noise():
    # Documented limit: a tone that never gets quieter looks like hum; it is pushed down to the floor.
    power = _power(_tone(2.0, 0.5))
    after = spectral_subtraction(power, floor=0.05)
    assert float(after[TONE_BINS].sum() / power[TONE_BINS].sum()) < 0.1


def test_noise_comes_from_the_quietest_frames_not_the_first_second():
    rng = np.random.default_rng(1)
    loud_intro = 0.5 * rng.standard_normal(SR)  # one second of loud broadband sound (drums, applause)
    noise = 0.01 * rng.standard_normal(5 * SR)
    quiet = _notes(5.0, 0.05) + noise
    power = _power(np.concatenate([loud_intro, quiet]))
    estimate = estimate_noise(power)[:, 0]
    true_noise = _power(noise).mean(dim=-1)
    away_from_tone = torch.ones_like(true_noise, dtype=torch.bool)
    away_from_tone[TONE_BINS] = False
    ratio = float(estimate[away_from_tone].mean() / true_noise[away_from_tone].mean())
    assert ratio == pytest.approx(1.0, abs=0.15)
    # So the notes after the intro are kept, while a first-second estimate would have erased them.
    after = spectral_subtraction(power)
    after_intro = slice(power.shape[-1] // 6 + 4, None)
    kept = after[TONE_BINS, after_intro].sum() / power[TONE_BINS, after_intro].sum()
    assert float(kept) > 0.85
    first_second = power[..., : SR // HOP].mean(dim=-1, keepdim=True)
    naive = torch.maximum(power - 1.5 * first_second, 0.05 * power)
    assert float(naive[TONE_BINS, after_intro].sum() / power[TONE_BINS, after_intro].sum()) < 0.3


def test_spectral_subtraction_is_batched_and_consistent_with_single_items():
    rng = np.random.default_rng(2)
    waves = np.stack([_tone(1.0, a) + s * rng.standard_normal(SR) for a, s in [(0.3, 0.1), (0.1, 0.01), (0.5, 0.3)]])
    power = _power(waves).double()  # float64 in, float32 out
    batched = spectral_subtraction(power)
    assert batched.shape == power.shape and batched.dtype == torch.float32
    singles = torch.stack([spectral_subtraction(p) for p in power])
    torch.testing.assert_close(batched, singles)
    four_d = spectral_subtraction(power.reshape(3, 1, *power.shape[-2:]))
    torch.testing.assert_close(four_d.reshape_as(batched), batched)
    assert torch.all(batched <= power.float() + 1e-6) and torch.all(batched >= 0.05 * power.float() - 1e-6)


def test_spectral_subtraction_edge_cases():
    one_frame = torch.rand(513, 1)
    out = spectral_subtraction(one_frame, floor=0.1)  # the only frame is the noise: floor everywhere
    torch.testing.assert_close(out, 0.1 * one_frame)
    silence = torch.zeros(2, 513, 50)
    assert torch.equal(spectral_subtraction(silence), silence)
    # A clean recording with a stretch of digital silence: the noise estimate is zero, nothing changes.
    rng = np.random.default_rng(3)
    gap_then_music = _power(np.concatenate([np.zeros(SR), 0.3 * rng.standard_normal(3 * SR)]))
    assert float(estimate_noise(gap_then_music).abs().max()) == 0.0
    torch.testing.assert_close(spectral_subtraction(gap_then_music), gap_then_music)
    torch.testing.assert_close(spectral_subtraction(one_frame, over_subtraction=0.0), one_frame)
    with pytest.raises(ValueError):
        spectral_subtraction(torch.rand(10))
    with pytest.raises(ValueError):
        spectral_subtraction(torch.rand(5, 5), noise_quantile=0.0)
    with pytest.raises(ValueError):
        spectral_subtraction(torch.rand(5, 5), floor=1.5)


def _rms_db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64)))))


def test_compressor_shrinks_the_gap_between_loud_and_quiet_sections():
    threshold_db, ratio = -24.0, 4.0
    loud = _tone(2.0, 10 ** (-6 / 20), hz=440.0)  # -6 dBFS peak, about -9 dBFS RMS
    quiet = _tone(2.0, 10 ** (-30 / 20), hz=440.0)  # -30 dBFS peak, below the threshold
    x = np.concatenate([loud, quiet]).astype(np.float32)
    y = compress_dynamic_range(x, SR, threshold_db=threshold_db, ratio=ratio)
    assert y.dtype == np.float32 and y.shape == x.shape and np.isfinite(y).all()
    middle_loud, middle_quiet = slice(int(0.5 * SR), int(1.5 * SR)), slice(int(2.5 * SR), int(3.5 * SR))
    gap_before = _rms_db(x[middle_loud]) - _rms_db(x[middle_quiet])
    gap_after = _rms_db(y[middle_loud]) - _rms_db(y[middle_quiet])
    expected_shrink = (_rms_db(loud) - threshold_db) * (1 - 1 / ratio)  # about 11.2 dB
    assert gap_after <= gap_before - 0.9 * expected_shrink
    assert float(np.abs(y).max()) == pytest.approx(float(np.abs(x).max()), rel=1e-3)  # makeup to the input peak
    # Look-ahead keeps the onset overshoot small, so the makeup gain lifts the quiet section.
    assert _rms_db(y[middle_quiet]) > _rms_db(x[middle_quiet]) + 6.0


def test_compressor_keeps_silence_silent_and_handles_short_input():
    zeros = np.zeros(SR, np.float32)
    assert np.array_equal(compress_dynamic_range(zeros, SR), zeros)
    x = np.concatenate([zeros, _tone(0.5, 0.8, hz=440.0).astype(np.float32), zeros])
    y = compress_dynamic_range(x, SR)
    assert np.isfinite(y).all() and np.all(y[: SR // 2] == 0)
    for n in (0, 1, 7, 300):
        short = np.full(n, 0.5, np.float32)
        out = compress_dynamic_range(short, SR)
        assert out.shape == (n,) and out.dtype == np.float32 and np.isfinite(out).all()


def test_compressor_with_ratio_one_is_identity_and_checks_arguments():
    x = _tone(0.3, 0.9, hz=440.0).astype(np.float32)
    np.testing.assert_allclose(compress_dynamic_range(x, SR, ratio=1.0, makeup=False), x, rtol=1e-6)
    with pytest.raises(ValueError):
        compress_dynamic_range(np.zeros((2, 100), np.float32), SR)
    with pytest.raises(ValueError):
        compress_dynamic_range(x, SR, ratio=0.5)
    with pytest.raises(ValueError):
        compress_dynamic_range(x, SR, attack_s=0.0)
