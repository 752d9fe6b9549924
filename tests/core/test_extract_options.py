"""Enhancement and the rule layer, wired through ExcerptFeaturizer and predict_file (as batch and serving use them)."""

import numpy as np
import pytest

from acousticsense import GENRES, ConfigError, FeatureConfig, HeadConfig, OutputHead, PostprocessConfig, predict_file
from acousticsense.extract import ExcerptFeaturizer
from tests.conftest import write_audio


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    path = tmp_path_factory.mktemp("enh") / "song.wav"
    write_audio(path, 12.0, 22050, 2)
    return str(path)


@pytest.mark.parametrize("enhance", ["denoise", "compress", "both"])
def test_enhancement_changes_the_features_and_the_feature_hash(song, enhance):
    plain = ExcerptFeaturizer(FeatureConfig())(song)
    config = FeatureConfig(enhance=enhance)
    enhanced = ExcerptFeaturizer(config)(song)
    assert enhanced.windows.shape == plain.windows.shape
    assert np.isfinite(enhanced.windows).all()
    assert not np.array_equal(enhanced.windows, plain.windows)
    assert config.feature_hash() != FeatureConfig().feature_hash()


def test_rules_give_class_weights_that_reweight_the_prediction(song):
    with pytest.raises(ConfigError, match="labels"):
        ExcerptFeaturizer(FeatureConfig(rules=True))
    result = ExcerptFeaturizer(FeatureConfig(rules=True), labels=GENRES)(song)
    assert result.class_weights.shape == (len(GENRES),) and result.class_weights.dtype == np.float32
    assert ExcerptFeaturizer(FeatureConfig())(song).class_weights is None
    logits = np.zeros((2, len(GENRES)), np.float32)  # uniform: the weights alone decide
    weights = np.ones(len(GENRES), np.float32)
    weights[GENRES.index("Metal")] = 1.3
    prediction = predict_file(logits, OutputHead(GENRES, HeadConfig()), PostprocessConfig(), class_weights=weights)
    assert prediction.top_genre == "Metal" and prediction.probabilities.sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_non_finite_float_audio_is_a_decode_error_with_every_option_on(tmp_path, bad):
    """A float WAV holding NaN/Inf used to escape as librosa's ParameterError from the rule layer (a failed block)."""
    import soundfile as sf

    from acousticsense.errors import StageError

    x = np.random.default_rng(0).standard_normal(22050 * 4).astype(np.float32) * 0.1
    x[5000:6000] = np.nan if bad == "nan" else np.inf
    sf.write(tmp_path / "bad.wav", x, 22050, subtype="FLOAT")
    config = FeatureConfig(rules=True, enhance="both", segments=2, excerpt_s=2.0)
    with pytest.raises(StageError, match="non-finite samples") as info:
        ExcerptFeaturizer(config, labels=GENRES)(str(tmp_path / "bad.wav"))
    assert info.value.stage == "decode"
