import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from acousticsense import (
    GENRES,
    BundleError,
    FeatureConfig,
    WindowClassifier,
    default_bundle_uri,
    load_bundle,
    model_config_for,
    save_bundle,
)


def _model(seed=0):
    torch.manual_seed(seed)
    return WindowClassifier(model_config_for("tiny", FeatureConfig(), len(GENRES))).eval()


@pytest.mark.parametrize("scheme", ["local", "memory"])
def test_round_trip_gives_identical_outputs(tmp_path, scheme):
    uri = str(tmp_path / "b") if scheme == "local" else f"memory://bundles/{tmp_path.name}"
    model = _model()
    saved = save_bundle(uri, model, features=FeatureConfig(), labels=GENRES, version="v1", preset="tiny")
    loaded = load_bundle(uri)
    assert (loaded.version, loaded.labels, loaded.preset) == ("v1", GENRES, "tiny")
    assert loaded.features == saved.features and loaded.model == saved.model
    assert loaded.feature_hash == FeatureConfig().feature_hash()
    x = torch.randn(3, 128, 224)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.build_model()(x), model(x))


def test_feature_hash_changes_with_any_feature_field():
    base = FeatureConfig()
    assert base.feature_hash() == FeatureConfig().feature_hash()
    assert base.feature_hash() != replace(base, excerpt_s=20.0).feature_hash()
    assert base.feature_hash() != replace(base, hop_length=512).feature_hash()


def test_missing_and_malformed_bundles_raise_bundle_error(tmp_path):
    with pytest.raises(BundleError, match="no model bundle"):
        load_bundle(str(tmp_path / "nowhere"))
    uri = tmp_path / "b"
    save_bundle(str(uri), _model(), features=FeatureConfig(), labels=GENRES, version="v1")
    manifest = json.loads((uri / "bundle.json").read_text())
    (uri / "bundle.json").write_text(json.dumps({**manifest, "format": 99}))
    with pytest.raises(BundleError, match="format"):
        load_bundle(str(uri))
    manifest["features"]["n_melz"] = 3
    (uri / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="unknown field"):
        load_bundle(str(uri))


def test_weights_that_do_not_fit_are_refused(tmp_path):
    uri = tmp_path / "b"
    save_bundle(str(uri), _model(), features=FeatureConfig(), labels=GENRES, version="v1")
    manifest = json.loads((uri / "bundle.json").read_text())
    manifest["model"]["depth"] = 5
    (uri / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="missing"):
        load_bundle(str(uri)).build_model()


def test_label_count_must_match_classes(tmp_path):
    with pytest.raises(BundleError, match="labels"):
        save_bundle(str(tmp_path / "b"), _model(), features=FeatureConfig(), labels=GENRES[:3], version="v1")


def test_demo_bundle_ships_and_loads():
    bundle = load_bundle(None)
    assert Path(default_bundle_uri(), "bundle.json").is_file()
    assert bundle.labels == GENRES and bundle.preset == "tiny"
    assert bundle.provenance["val_file_accuracy"] > 0.5
    bundle.build_model()


def test_configs_only_load_skips_the_weights_but_still_requires_them(tmp_path):
    uri = tmp_path / "b"
    save_bundle(str(uri), _model(), features=FeatureConfig(), labels=GENRES, version="v1")
    light = load_bundle(str(uri), weights=False)
    full = load_bundle(str(uri))
    assert light.state_dict == {} and full.state_dict
    assert (light.features, light.model, light.version) == (full.features, full.model, full.version)
    (uri / "model.safetensors").unlink()
    with pytest.raises(BundleError, match="no model bundle"):
        load_bundle(str(uri), weights=False)
