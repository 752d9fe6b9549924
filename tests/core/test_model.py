import pytest
import torch

from acousticsense import FeatureConfig, WindowClassifier, model_config_for
from acousticsense.errors import ConfigError


@pytest.mark.parametrize(("preset", "dim", "depth"), [("tiny", 64, 4), ("small", 192, 12), ("base", 768, 12)])
def test_presets_build_and_give_logits_per_window(preset, dim, depth):
    features = FeatureConfig()
    config = model_config_for(preset, features, 16)
    assert (config.dim, config.depth, config.n_patches) == (dim, depth, (128 // 16) * (224 // 16))
    model = WindowClassifier(config).eval()
    with torch.inference_mode():
        logits = model(torch.randn(2, features.n_mels, features.window_frames))
    assert logits.shape == (2, 16) and torch.isfinite(logits).all()


def test_base_preset_has_vit_b_size():
    model = WindowClassifier(model_config_for("base", FeatureConfig(), 16))
    assert 80e6 < sum(p.numel() for p in model.parameters()) < 90e6


def test_batch_equals_single_windows():
    torch.manual_seed(0)
    model = WindowClassifier(model_config_for("tiny", FeatureConfig(), 16)).eval()
    x = torch.randn(5, 128, 224)
    with torch.inference_mode():
        batch = model(x)
        singles = torch.cat([model(x[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(batch, singles, atol=1e-5, rtol=1e-5)


def test_unknown_preset_and_bad_geometry_are_config_errors():
    with pytest.raises(ConfigError, match="unknown model preset"):
        model_config_for("huge", FeatureConfig(), 16)
    with pytest.raises(ConfigError, match="divisible"):
        model_config_for("tiny", FeatureConfig(window_frames=100), 16)
