import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from acousticsense import (
    DEFAULT_BUNDLE,
    GENRES,
    NAMED_BUNDLES,
    BundleError,
    FeatureConfig,
    HeadConfig,
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


@pytest.mark.parametrize("name", sorted(NAMED_BUNDLES))
def test_named_bundles_ship_and_load(name):
    bundle = load_bundle(name)
    model = bundle.build_model()
    x = torch.zeros(2, *bundle.model.input_shape)
    with torch.inference_mode():
        assert model(x).shape == (2, len(bundle.labels))
    assert set(bundle.genres) <= set(GENRES) | {"Ambient"}  # the article's names, plus Ambient for the taggers


def test_default_bundle_is_the_real_musicnn_model():
    bundle = load_bundle(None, weights=False)
    assert Path(default_bundle_uri(), "bundle.json").is_file() and bundle.preset == DEFAULT_BUNDLE
    assert bundle.model.family == "musicnn" and bundle.head.activation == "sigmoid"
    assert {"Classical", "Rock", "Electronic", "Jazz"} <= set(bundle.genres)
    assert "ISC" in bundle.provenance["licence"]
    assert Path(default_bundle_uri(), "LICENSE.musicnn.md").read_text().startswith("Copyright (c) Music Technology")


def test_synthetic_bundle_keeps_its_training_record():
    bundle = load_bundle("synthetic-tiny", weights=False)
    assert bundle.labels == GENRES == bundle.genres and bundle.model.family == "vit"
    assert bundle.provenance["val_file_accuracy"] > 0.5


def test_format_1_manifests_still_load(tmp_path):
    uri = tmp_path / "b"
    save_bundle(str(uri), _model(), features=FeatureConfig(norm_mean=-30.0), labels=GENRES, version="v1")
    manifest = json.loads((uri / "bundle.json").read_text())
    features = manifest["features"]
    features["norm_mean_db"], features["norm_std_db"] = features.pop("norm_mean"), features.pop("norm_std")
    old = {k: v for k, v in manifest.items() if k != "head"} | {"format": 1}
    old["model"] = {k: v for k, v in manifest["model"].items() if k != "family"}
    for field in ("front_end", "compression_gain", "win_length"):
        del features[field]
    (uri / "bundle.json").write_text(json.dumps(old))
    loaded = load_bundle(str(uri))
    assert loaded.features.norm_mean == -30.0 and loaded.model.family == "vit" and loaded.genres == GENRES


def test_genre_mapping_must_name_known_labels(tmp_path):
    with pytest.raises(BundleError, match="does not have"):
        save_bundle(
            str(tmp_path / "b"),
            _model(),
            features=FeatureConfig(),
            labels=GENRES,
            version="v1",
            head=HeadConfig(activation="sigmoid", genres={"Loud": ("Metal", "Rock"), "Soft": ("Folk", "Lounge")}),
        )


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


def test_configs_resolved_once_then_weights_read_where_the_model_runs(tmp_path):
    uri = tmp_path / "b"
    model = _model(seed=3)
    save_bundle(str(uri), model, features=FeatureConfig(), labels=GENRES, version="v1")
    resolved = load_bundle(str(uri), weights=False).with_overrides(segments=2, top_k=3)  # what a driver hands out
    ready = resolved.with_weights()
    assert ready.features.segments == 2 and ready.postprocess.top_k == 3  # the overrides survive
    x = torch.randn(2, 128, 224)
    with torch.inference_mode():
        torch.testing.assert_close(ready.build_model()(x), model(x))
    assert ready.with_weights() is ready  # weights are read once
    (uri / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(BundleError, match="cannot read the weights"):
        resolved.with_weights()
    with pytest.raises(BundleError, match="holds no weights"):
        replace(resolved, source=None).with_weights()


def test_a_shipped_bundle_remembers_its_name_not_this_machines_path():
    # On a cluster each node resolves the name to its own package folder.
    assert load_bundle(None, weights=False).source == DEFAULT_BUNDLE
    assert load_bundle("synthetic-tiny", weights=False).with_weights().state_dict


def test_a_corrupt_weights_file_is_a_bundle_error(tmp_path):
    uri = tmp_path / "b"
    save_bundle(str(uri), _model(), features=FeatureConfig(), labels=GENRES, version="v1")
    (uri / "model.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(BundleError, match="cannot read model bundle"):
        load_bundle(str(uri))
