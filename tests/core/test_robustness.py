import numpy as np
import pytest

from acousticsense import read_excerpt
from acousticsense.robustness import add_noise_at_snr, agreement, encode_mp3, pink_noise, snr_db, white_noise


def _spectral_slope(x: np.ndarray) -> float:
    """Slope of log power vs log frequency, from averaged periodograms of 4096-sample blocks."""
    blocks = x[: len(x) // 4096 * 4096].reshape(-1, 4096)
    power = (np.abs(np.fft.rfft(blocks, axis=1)) ** 2).mean(axis=0)
    k = np.arange(len(power))
    band = (k >= 4) & (k < len(power) - 1)
    return float(np.polyfit(np.log(k[band]), np.log(power[band]), 1)[0])


@pytest.mark.parametrize("make, slope", [(white_noise, 0.0), (pink_noise, -1.0)])
def test_noise_has_unit_power_the_right_colour_and_is_reproducible(make, slope):
    x = make(2**18, 7)
    assert x.dtype == np.float32 and x.shape == (2**18,)
    assert np.mean(x.astype(np.float64) ** 2) == pytest.approx(1.0, rel=1e-5)
    assert abs(float(x.mean())) < 0.01
    assert _spectral_slope(x) == pytest.approx(slope, abs=0.1)
    np.testing.assert_array_equal(x, make(2**18, 7))
    np.testing.assert_array_equal(x, make(2**18, np.random.default_rng(7)))
    assert not np.array_equal(x, make(2**18, 8))


def test_pink_noise_has_equal_power_per_octave():
    x = pink_noise(2**20, 0).astype(np.float64)
    power = np.abs(np.fft.rfft(x)) ** 2
    octaves = [power[2**j : 2 ** (j + 1)].sum() for j in range(6, 18)]
    assert max(octaves) / min(octaves) < 1.3


@pytest.mark.parametrize("shape", [(44100,), (2, 22050)])
@pytest.mark.parametrize("target", [20.0, 10.0, 0.0, -5.0])
def test_add_noise_at_snr_hits_the_snr_against_the_clean_signal(shape, target):
    rng = np.random.default_rng(0)
    t = np.arange(shape[-1]) / 22050
    clean = (0.2 * np.sin(2 * np.pi * 330 * t) * np.ones(shape)).astype(np.float32)
    noise = rng.standard_normal(shape) * 5.0  # its own level does not matter
    noisy = add_noise_at_snr(clean, noise, target)
    assert noisy.shape == clean.shape and noisy.dtype == np.float32
    assert snr_db(clean, noisy) == pytest.approx(target, abs=1e-3)
    added = noisy - clean  # the noise itself, only scaled
    assert np.corrcoef(added.ravel(), noise.ravel())[0, 1] > 0.9999


def test_add_noise_at_snr_does_not_clip_and_refuses_what_has_no_snr():
    clean = np.full(1000, 0.9, dtype=np.float32)
    noisy = add_noise_at_snr(clean, white_noise(1000, 0), 0.0)
    assert np.abs(noisy).max() > 1.0  # float output, left for the caller to store as float
    with pytest.raises(ValueError, match="silent"):
        add_noise_at_snr(np.zeros(100), white_noise(100), 10.0)
    with pytest.raises(ValueError, match="silent"):
        add_noise_at_snr(clean, np.zeros(1000), 10.0)
    with pytest.raises(ValueError, match="NaN"):
        add_noise_at_snr(np.full(100, np.nan), white_noise(100), 10.0)
    with pytest.raises(ValueError):
        add_noise_at_snr(clean, white_noise(999), 10.0)
    with pytest.raises(ValueError):
        add_noise_at_snr(clean, white_noise(1000), float("inf"))
    with pytest.raises(ValueError):
        snr_db(clean, clean[:10])
    with pytest.raises(ValueError):
        white_noise(1)


def test_agreement_of_answers_and_of_top_k_sets():
    assert agreement(["Rock", "Jazz", "Pop", "Pop"], ["Rock", "Pop", "Pop", "Jazz"]) == 0.5
    reference = [("rock", "pop", "indie", "80s"), ("jazz", "blues", "soul")]
    same_set_other_order = [("indie", "rock", "pop", "jazz"), ("blues", "soul", "jazz")]
    assert agreement(reference, same_set_other_order, k=3) == 1.0
    assert agreement(reference, same_set_other_order, k=1) == 0.0
    assert agreement(reference, [("rock", "pop", "80s"), ("jazz", "blues", "soul")], k=3) == 0.5
    assert agreement([("a", "b")], [("b", "a")], k=3) == 1.0  # fewer than k: the whole ranking
    with pytest.raises(ValueError):
        agreement(["a"], ["a", "b"])
    with pytest.raises(ValueError):
        agreement([], [])
    with pytest.raises(ValueError):
        agreement(reference, reference, k=0)


def test_encode_mp3_writes_a_low_bitrate_file_that_decodes_to_the_same_tone(tmp_path):
    rate = 44100
    t = np.arange(5 * rate) / rate
    tone = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    data = encode_mp3(tone, rate, 32_000)
    assert data[:3] == b"ID3" or data[0] == 0xFF  # an MP3 stream
    assert len(data) * 8 / 5.0 == pytest.approx(32_000, rel=0.1)
    path = tmp_path / "x.mp3"
    path.write_bytes(data)
    decoded, decoded_rate = read_excerpt(str(path))
    assert decoded_rate == rate and decoded.shape[0] == 1
    assert decoded.shape[1] == pytest.approx(len(tone), abs=rate // 20)
    spectrum = np.abs(np.fft.rfft(decoded[0]))
    assert np.argmax(spectrum) * rate / decoded.shape[1] == pytest.approx(1000, abs=2)
    stereo = encode_mp3(np.stack([tone, tone]), rate, 64_000)
    assert len(stereo) > len(data)
    with pytest.raises(ValueError, match="resample"):
        encode_mp3(tone, 96_000)
    with pytest.raises(ValueError):
        encode_mp3(np.zeros((3, 100), np.float32), rate)
    with pytest.raises(ValueError):
        encode_mp3(tone, rate, 1_000)
