"""The demo model trains on what the job serves: the job's featurizer, then the bundle's normalisation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from acousticsense import load_bundle
from acousticsense.config import FeatureConfig
from acousticsense.demo.train import _db_windows
from acousticsense.extract import ExcerptFeaturizer
from tests.conftest import write_audio


def test_training_windows_are_the_served_windows_before_normalisation(tmp_path):
    bundle = load_bundle("synthetic-tiny", weights=False)
    # The shipped demo bundle's features are the training defaults plus the statistics training measured.
    assert bundle.features == replace(
        FeatureConfig(), norm_mean=bundle.features.norm_mean, norm_std=bundle.features.norm_std
    )
    files = [(tmp_path / "a.wav", 0), (tmp_path / "b.ogg", 3)]
    write_audio(files[0][0], 7.0, sample_rate_hz=44100, channels=2)
    write_audio(files[1][0], 40.0, sample_rate_hz=48000, frequency_hz=220.0)  # longer than the excerpt

    per_file, labels = _db_windows(files, FeatureConfig())

    assert labels.tolist() == [0, 3]
    served = ExcerptFeaturizer(bundle.features)
    for (path, _), db in zip(files, per_file):
        normalised = (db.numpy() - bundle.features.norm_mean) / bundle.features.norm_std
        np.testing.assert_allclose(normalised, served(str(path)).windows.astype(np.float32), atol=2e-2)
