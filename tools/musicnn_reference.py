"""Compute ``tests/fixtures/musicnn_reference.npz``: musicnn's original TensorFlow outputs on the reference clips.

The fixture lets the test suite check the PyTorch port of musicnn (Pons & Serra 2019, PyPI ``musicnn==0.1.0``,
ISC licence) without TensorFlow. This script runs ONLY in a throwaway environment, never in the project's venv
and never in CI. From the repository root::

    /root/.pyenv/versions/3.11.7/bin/python3 -m venv /tmp/tfref/venv      # any Python 3.11
    /tmp/tfref/venv/bin/pip install tensorflow-cpu==2.21.0 tf-keras==2.21.0 librosa==0.11.0 numpy
    mkdir -p /tmp/mnn/wheel && cd /tmp/mnn
    /tmp/tfref/venv/bin/pip download --no-deps musicnn==0.1.0
    # sha256 f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa
    unzip -q -d wheel musicnn-0.1.0-py3-none-any.whl
    cd -   # `pip install musicnn` fails on 3.11; the unzipped wheel goes on sys.path instead
    TF_USE_LEGACY_KERAS=1 TF_ENABLE_ONEDNN_OPTS=0 /tmp/tfref/venv/bin/python tools/musicnn_reference.py \
        --wheel-dir /tmp/mnn/wheel

What it computes, per clip of ``tests/fixtures/reference_clips.py`` (float32, 16 kHz, 3.0 s):

- the model input exactly as musicnn's ``extractor.batch_data`` (librosa mel power, n_fft 512, hop 256, 96 mels,
  librosa 0.11 defaults otherwise; then ``log10(10000 * mel + 1)``), but in float32: musicnn casts the mel power
  to float16 first, and ``10000 * mel`` then overflows to inf once a bin exceeds 6.55. The first 187-frame patch
  is kept: ``(187, 96)``;
- the logits (pre-sigmoid ``y``) of musicnn's own graph (the wheel's ``musicnn.models.define_model``, in
  ``tf.compat.v1`` graph mode, ``is_training=False``) with the ``MSD_musicnn`` and ``MTT_musicnn`` checkpoints;
- for ``loud_chord``, whether musicnn's own float16 path gives NaN tags (MSD), to document the overflow.

Two details matter when comparing against this fixture:

- ``TF_ENABLE_ONEDNN_OPTS=0`` (set by default below) keeps TF on its plain Eigen kernels, as TF 1.x had. With
  oneDNN on (TF's default on x86), Grappler fuses Conv2D+BiasAdd+Relu and the fused ReLU turns NaN into 0, so
  the float16 overflow yields finite but wrong tags instead of NaN; the float32 logits move by < 3e-5.
- librosa >= 0.10 pads the STFT with zeros (``pad_mode="constant"``); librosa 0.7-0.9, which musicnn was
  released with, reflected (``"reflect"``). Only frame 0 of each patch differs (clicks and silence: none).

Output keys: ``clip_names`` (str, n), ``patches`` (float32, (n, 187, 96)), ``msd_logits`` / ``mtt_logits``
(float32, (n, 50); label order as ``MSD_LABELS`` / ``MTT_LABELS`` in musicnn's ``configuration.py``),
``float16_overflow_nan`` (bool, 0-d) and ``meta`` (JSON str: versions, date, command).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import shlex
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tf.compat.v1.layers needs Keras 2 (tf-keras)
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # plain kernels: IEEE NaN propagation (see above)

ROOT = Path(__file__).resolve().parents[1]
N_FRAMES = 187  # musicnn's 3 s patch: librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1
N_MELS = 96
LOUD_CLIP = "loud_chord"
MODELS = ("MSD_musicnn", "MTT_musicnn")


def load_clips() -> dict[str, np.ndarray]:
    """The reference clips (name -> float32 ``(48000,)``), loaded by path so that ``tests`` is not imported."""
    path = ROOT / "tests" / "fixtures" / "reference_clips.py"
    spec = importlib.util.spec_from_file_location("reference_clips", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reference_clips()


def log_mel_patch(audio: np.ndarray, float16: bool = False) -> np.ndarray:
    """musicnn's input for a 16 kHz clip: first patch of ``log10(10000 * mel + 1)``, float32 ``(187, 96)``.

    ``float16=True`` casts the mel power to float16 before the log, as ``musicnn.extractor.batch_data`` does.
    """
    import librosa

    mel = librosa.feature.melspectrogram(y=audio, sr=16000, hop_length=256, n_fft=512, n_mels=N_MELS).T
    mel = mel.astype(np.float16) if float16 else mel.astype(np.float32)
    with np.errstate(over="ignore"):
        log_mel = np.log10(10000 * mel + 1)
    assert log_mel.shape[0] >= N_FRAMES, log_mel.shape
    return log_mel[:N_FRAMES].astype(np.float32)


def run_musicnn(wheel_dir: Path, model: str, batch: np.ndarray) -> np.ndarray:
    """Logits (pre-sigmoid) of musicnn's TF graph for ``model`` on ``batch`` ``(n, 187, 96)``: float32 ``(n, 50)``."""
    import tensorflow as tf
    from musicnn import models

    tf.compat.v1.disable_eager_execution()
    tf.compat.v1.reset_default_graph()
    with tf.name_scope("model"):  # as musicnn.extractor.extractor
        x = tf.compat.v1.placeholder(tf.float32, [None, N_FRAMES, N_MELS])
        y = models.define_model(x, False, model, 50)[0]
    with tf.compat.v1.Session() as sess:
        # The checkpoint's `checkpoint` file names its author's absolute path: restore the prefix directly.
        # Saver() covers every graph variable, so a variable missing from the checkpoint is an error here
        # (musicnn's extractor swallows restore errors with a bare except).
        tf.compat.v1.train.Saver().restore(sess, f"{wheel_dir / 'musicnn' / model}/")
        logits = sess.run(y, feed_dict={x: batch})
    return np.asarray(logits, dtype=np.float32)


def top5(logits: np.ndarray, labels: list[str]) -> str:
    """``tag prob`` for the 5 most probable tags of one clip's logits ``(50,)``."""
    probs = 1 / (1 + np.exp(-logits.astype(np.float64)))
    return "  ".join(f"{labels[i]} {probs[i]:.2f}" for i in np.argsort(-probs, kind="stable")[:5])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel-dir", type=Path, required=True, help="folder holding the unzipped musicnn/ package")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "musicnn_reference.npz")
    args = parser.parse_args()
    args.wheel_dir = args.wheel_dir.resolve()
    sys.path.insert(0, str(args.wheel_dir))

    import librosa
    import tensorflow as tf
    import tf_keras
    from musicnn import configuration

    clips = load_clips()
    names = list(clips)
    patches = np.stack([log_mel_patch(clips[n]) for n in names])
    logits = {model: run_musicnn(args.wheel_dir, model, patches) for model in MODELS}
    loud16 = log_mel_patch(clips[LOUD_CLIP], float16=True)[None]
    taggram16 = 1 / (1 + np.exp(-run_musicnn(args.wheel_dir, "MSD_musicnn", loud16).astype(np.float64)))
    overflow_nan = bool(np.isnan(taggram16).any())
    inf_bins = int(np.isinf(loud16).sum())

    meta = {
        "tensorflow": tf.__version__,
        "tf-keras": tf_keras.__version__,
        "librosa": librosa.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "musicnn": "0.1.0",
        "TF_ENABLE_ONEDNN_OPTS": os.environ["TF_ENABLE_ONEDNN_OPTS"],
        "librosa_pad_mode": "constant (librosa default)",
        "float16_inf_input_bins": inf_bins,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(f"{k}={os.environ[k]}" for k in ("TF_USE_LEGACY_KERAS", "TF_ENABLE_ONEDNN_OPTS"))
        + " python "
        + shlex.join(sys.argv),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        clip_names=np.array(names),
        patches=patches,
        msd_logits=logits["MSD_musicnn"],
        mtt_logits=logits["MTT_musicnn"],
        float16_overflow_nan=np.array(overflow_nan),
        meta=np.array(json.dumps(meta)),
    )

    for i, name in enumerate(names):
        print(f"{name:12s} MSD  {top5(logits['MSD_musicnn'][i], configuration.MSD_LABELS)}")
        print(f"{'':12s} MTT  {top5(logits['MTT_musicnn'][i], configuration.MTT_LABELS)}")
    print(f"{LOUD_CLIP} through musicnn's float16 cast: {inf_bins} inf input bins, NaN tags: {overflow_nan}")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes); {json.dumps(meta)}")


if __name__ == "__main__":
    main()
