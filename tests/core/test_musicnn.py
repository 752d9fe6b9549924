"""The musicnn port against musicnn's own TensorFlow graph (fixture made by tools/musicnn_reference.py)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from acousticsense import front_end, load_bundle, predict_file
from acousticsense.models import Musicnn, MusicnnConfig
from tests.fixtures.reference_clips import reference_clips

REFERENCE = np.load(Path(__file__).parents[1] / "fixtures" / "musicnn_reference.npz")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def _logits(bundle, windows: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return bundle.build_model()(torch.from_numpy(windows)).numpy()


@pytest.mark.parametrize(("name", "key"), [("musicnn-msd", "msd_logits"), ("musicnn-mtt", "mtt_logits")])
def test_network_matches_the_tensorflow_graph(name, key):
    bundle = load_bundle(name)
    patches = np.ascontiguousarray(REFERENCE["patches"].transpose(0, 2, 1))  # TF's (time, mel) -> ours (mel, time)
    ours, theirs = _sigmoid(_logits(bundle, patches)), _sigmoid(REFERENCE[key])
    assert np.abs(ours - theirs).max() <= 1e-4
    for a, b in zip(ours, theirs):
        assert list(np.argsort(-a)[:5]) == list(np.argsort(-b)[:5])


@pytest.mark.parametrize(("name", "key"), [("musicnn-msd", "msd_logits"), ("musicnn-mtt", "mtt_logits")])
def test_front_end_and_network_match_end_to_end(name, key):
    """Our log-compressed mel on the same clips gives musicnn's input and its tags."""
    bundle = load_bundle(name)
    extractor = front_end(bundle.features)
    clips = reference_clips()
    ours = []
    with torch.inference_mode():
        for i, clip in enumerate(REFERENCE["clip_names"]):
            patch = extractor(torch.from_numpy(clips[str(clip)]))[:, : bundle.features.window_frames]
            np.testing.assert_allclose(patch.T.numpy(), REFERENCE["patches"][i], atol=1e-4, rtol=0)
            ours.append(patch.numpy())
    assert np.abs(_sigmoid(_logits(bundle, np.stack(ours))) - _sigmoid(REFERENCE[key])).max() <= 1e-4


def test_loud_clip_stays_finite_where_musicnn_gave_nan():
    """musicnn casts the mel to float16 before log10(1 + 10000 x): inf -> NaN tags. Ours computes in float32."""
    assert bool(REFERENCE["float16_overflow_nan"])
    bundle = load_bundle("musicnn-msd")
    loud = reference_clips()["loud_chord"]
    with torch.inference_mode():
        mel = front_end(bundle.features, normalize=False)(torch.from_numpy(loud))
    assert torch.isfinite(mel).all() and float(mel.max()) > np.log10(1 + 10000 * 6.55)  # float16 would overflow
    prediction = predict_file(_logits(bundle, mel[None, :, :187].numpy()), bundle.output_head, bundle.postprocess)
    assert np.isfinite(prediction.probabilities).all() and all(np.isfinite(t["score"]) for t in prediction.tags)


def test_combined_bundle_is_the_max_of_both_networks():
    msd, mtt, both = (load_bundle(n) for n in ("musicnn-msd", "musicnn-mtt", "musicnn-msd-mtt"))
    patches = np.ascontiguousarray(REFERENCE["patches"].transpose(0, 2, 1))
    by_tag = {}
    for bundle in (msd, mtt):
        for tag, column in zip(bundle.labels, _logits(bundle, patches).T):
            by_tag[tag] = np.maximum(by_tag[tag], column) if tag in by_tag else column
    combined = _logits(both, patches)
    assert list(both.labels) == list(by_tag) and set(msd.labels) & set(mtt.labels)  # shared tags were merged
    np.testing.assert_array_equal(combined, np.stack([by_tag[t] for t in both.labels], axis=1))


def test_fused_max_over_mel_equals_the_layer_by_layer_forward():
    torch.manual_seed(0)
    model = Musicnn(MusicnnConfig()).eval()
    for module in model.modules():  # BN statistics with both signs of scale, as in the real checkpoints
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.weight.data.normal_()
            module.running_mean.data.normal_()
            module.running_var.data.uniform_(0.5, 2.0)
    x = torch.rand(3, 96, 187) * 3
    blocks = [*model.networks[0].timbral, *model.networks[0].temporal]
    with torch.inference_mode():
        fused = model(x)
        for block in blocks:
            block.train()  # the plain conv -> ReLU -> BN -> max path (BN itself stays in eval mode)
            block.bn.eval()
        plain = model(x)
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)


def test_batch_equals_singles():
    bundle = load_bundle("musicnn-msd")
    patches = np.ascontiguousarray(REFERENCE["patches"].transpose(0, 2, 1))
    batch = _logits(bundle, patches)
    singles = np.concatenate([_logits(bundle, patches[i : i + 1]) for i in range(len(patches))])
    # Equal up to float32 summation order, which oneDNN picks per batch shape: logits of magnitude ~6 differed by
    # 1.2e-5 (2.4e-6 relative) in one CI-like run, so the bound is relative as well as absolute.
    np.testing.assert_allclose(batch, singles, atol=1e-5, rtol=1e-5)


def test_multi_label_prediction_reports_tags_and_genres():
    bundle = load_bundle("musicnn-msd-mtt")
    noise = np.ascontiguousarray(REFERENCE["patches"][[2]].transpose(0, 2, 1))  # white noise
    prediction = predict_file(_logits(bundle, noise), bundle.output_head, bundle.postprocess)
    assert len(prediction.tags) == len(bundle.labels) and prediction.tags[0]["score"] >= prediction.tags[-1]["score"]
    assert prediction.probabilities.shape == (len(bundle.genres),)
    assert abs(float(prediction.probabilities.sum()) - 1.0) < 1e-5
    assert prediction.top_genre == "Electronic"  # noise: "electronic", "dance", "techno" (MSD and MTT agree)
