import numpy as np
import pytest
import torch

from acousticsense import FeatureConfig, WindowClassifier, WindowPredictor, model_config_for, resolve_precision
from acousticsense.errors import ConfigError
from acousticsense.inference import logits_per_file, predict_many


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return WindowClassifier(model_config_for("tiny", FeatureConfig(), 16)).eval()


def test_predict_many_splits_shared_batches_back_per_file(model):
    rng = np.random.default_rng(0)
    files = [rng.standard_normal((n, 128, 224)).astype(np.float16) for n in (1, 5, 3)]
    predictor = WindowPredictor(model, device="cpu", max_batch_windows=4)  # forces several forwards
    logits = predict_many(predictor, files)
    assert [lg.shape for lg in logits] == [(1, 16), (5, 16), (3, 16)]
    for windows, got in zip(files, logits):
        np.testing.assert_allclose(got, predictor.predict_logits(windows), atol=1e-4)
    assert predict_many(predictor, []) == []


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precision_on_cpu_agrees_with_fp32(model, precision):
    x = np.random.default_rng(1).standard_normal((32, 128, 224)).astype(np.float32)
    reference = WindowPredictor(model, device="cpu", precision="fp32").predict_logits(x)
    reduced = WindowPredictor(model, device="cpu", precision=precision).predict_logits(x)
    assert reduced.dtype == np.float32
    assert (reduced.argmax(1) == reference.argmax(1)).mean() >= 0.9
    assert np.abs(reduced - reference).max() < 0.1


def test_precision_resolution():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("auto", cuda) == "fp16"
    with pytest.raises(ConfigError, match="CPU only"):
        resolve_precision("int8", cuda)
    with pytest.raises(ConfigError):
        resolve_precision("fp8", cpu)  # type: ignore[arg-type]


@pytest.mark.requires_cuda
def test_fp16_on_cuda_agrees_with_fp32(model):
    x = np.random.default_rng(2).standard_normal((64, 128, 224)).astype(np.float32)
    reference = WindowPredictor(model, device="cpu", precision="fp32").predict_logits(x)
    half = WindowPredictor(model, device="cuda", precision="fp16").predict_logits(x)
    assert (half.argmax(1) == reference.argmax(1)).mean() >= 0.995


def test_logits_per_file_isolates_a_file_that_breaks_the_batch(model):
    good = np.zeros((2, 128, 224), np.float16)
    wrong_shape = np.zeros((1, 64, 224), np.float16)  # cannot be concatenated, cannot run alone either
    predictor = WindowPredictor(model, device="cpu")
    results = logits_per_file(predictor, [good, wrong_shape, good])
    assert isinstance(results[1], Exception)
    assert results[0].shape == results[2].shape == (2, 16)


def test_the_callers_model_is_left_as_it_was_unless_handed_over():
    torch.manual_seed(0)
    model = WindowClassifier(model_config_for("tiny", FeatureConfig(), 4)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = np.random.default_rng(2).standard_normal((3, 128, 224)).astype(np.float32)

    WindowPredictor(model, device="cpu", precision="bf16").predict_logits(x)
    assert model.training and all(p.dtype == torch.float32 for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    handed_over = WindowPredictor(model, device="cpu", precision="bf16", copy_model=False)
    assert handed_over.model is model and not model.training
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())  # converted in place, as documented
