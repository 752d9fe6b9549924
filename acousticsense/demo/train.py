"""Train the ``tiny`` preset on the synthetic demo corpus and write a model bundle.

    python -m acousticsense.demo.train --output acousticsense/demo/bundle

This is a demo model: it knows the procedurally generated genres of ``acousticsense.demo.corpus``,
not real music. Bring a real checkpoint by saving your trained :class:`WindowClassifier` with
:func:`acousticsense.save_bundle` (see README).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

from acousticsense.bundle import save_bundle
from acousticsense.config import GENRES, FeatureConfig, PostprocessConfig
from acousticsense.demo.corpus import write_corpus
from acousticsense.extract import ExcerptFeaturizer
from acousticsense.models import WindowClassifier, model_config_for

__all__ = ["train_demo_bundle", "main"]


def _labelled_files(corpus: Path) -> list[tuple[Path, int]]:
    files = []
    for label, genre in enumerate(GENRES):
        files += [(p, label) for p in sorted((corpus / genre).glob("*")) if p.is_file()]
    return files


def _db_windows(files: list[tuple[Path, int]], config: FeatureConfig) -> tuple[list[torch.Tensor], np.ndarray]:
    """Un-normalised dB windows per file, ``(n_windows, n_mels, frames)`` each, and the file labels.

    Made by the job's own :class:`ExcerptFeaturizer` (with mean 0 / std 1, since the statistics come from
    these windows), so the demo model trains on exactly the excerpt, windows and front end it is served with.
    """
    featurizer = ExcerptFeaturizer(replace(config, norm_mean=0.0, norm_std=1.0))
    per_file = [torch.from_numpy(featurizer(str(path)).windows.astype(np.float32)) for path, _ in files]
    return per_file, np.asarray([label for _, label in files])


def _augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """SpecAugment-style time and frequency masks and a random gain, so the model does not memorise clips."""
    batch = batch.clone()
    n, mels, frames = batch.shape
    gain = (torch.rand(n, 1, 1, generator=generator) - 0.5) * 0.6  # about +-6 dB in normalised units
    batch += gain
    for i in range(n):
        f0 = int(torch.randint(0, mels - 16, (1,), generator=generator))
        t0 = int(torch.randint(0, frames - 32, (1,), generator=generator))
        batch[i, f0 : f0 + int(torch.randint(0, 16, (1,), generator=generator)), :] = 0.0
        batch[i, :, t0 : t0 + int(torch.randint(0, 32, (1,), generator=generator))] = 0.0
    return batch


def train_demo_bundle(
    output: str,
    corpus: Path | None = None,
    per_class: int = 32,
    epochs: int = 25,
    seed: int = 0,
    duration_s: float = 12.0,
    formats: tuple[str, ...] = ("wav", "flac", "ogg", "mp3"),
    log=print,
) -> dict[str, float]:
    """Generate (or reuse) a corpus, train ``tiny`` on 80% of the files, report held-out accuracy, save.

    Returns:
        metrics: ``val_window_accuracy``, ``val_file_accuracy``, ``train_seconds``.
    """
    torch.manual_seed(seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = corpus or Path(tmp) / "corpus"
        if corpus is None:
            # Every codec in training: a model that never heard MP3's low-pass mistakes it for a genre cue.
            write_corpus(root, per_class=per_class, seed=seed, duration_s=duration_s, formats=formats)
        files = _labelled_files(root)
        if not files:
            raise SystemExit(f"no labelled files under {root} (expected GTZAN-style <genre>/<clip> folders)")
        base = FeatureConfig()
        per_file, labels = _db_windows(files, base)

    all_db = torch.cat(per_file)
    mean, std = float(all_db.mean()), float(all_db.std())
    features = replace(base, norm_mean=round(mean, 3), norm_std=round(std, 3))
    per_file = [(w - features.norm_mean) / features.norm_std for w in per_file]

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(per_file))
    n_val = max(len(GENRES), len(per_file) // 5)
    val_idx, train_idx = order[:n_val], order[n_val:]
    x_train = torch.cat([per_file[i] for i in train_idx])
    y_train = torch.cat([torch.full((per_file[i].shape[0],), int(labels[i])) for i in train_idx])

    model = WindowClassifier(model_config_for("tiny", features, len(GENRES)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    steps = epochs * max(1, -(-len(x_train) // 64))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x_train), generator=generator)
        total = 0.0
        for start in range(0, len(perm), 64):
            idx = perm[start : start + 64]
            loss = loss_fn(model(_augment(x_train[idx], generator)), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(idx)
        if epoch % 5 == 4 or epoch == epochs - 1:
            log(f"epoch {epoch + 1:3d}/{epochs}  train loss {total / len(x_train):.3f}")

    model.eval()
    window_hits = window_count = file_hits = 0
    with torch.inference_mode():
        for i in val_idx:
            probs = model(per_file[i]).softmax(-1)
            window_hits += int((probs.argmax(-1) == int(labels[i])).sum())
            window_count += probs.shape[0]
            file_hits += int(probs.mean(0).argmax() == int(labels[i]))
    metrics = {
        "val_window_accuracy": round(window_hits / window_count, 4),
        "val_file_accuracy": round(file_hits / len(val_idx), 4),
        "train_seconds": round(time.perf_counter() - started, 1),
    }
    save_bundle(
        output,
        model,
        features=features,
        labels=GENRES,
        version=f"demo-tiny-s{seed}",
        preset="tiny",
        postprocess=PostprocessConfig(),
        provenance={
            "kind": "demo model trained on the synthetic corpus of acousticsense.demo.corpus; not for real music",
            "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": "python -m acousticsense.demo.train " + " ".join(sys.argv[1:]),
            "corpus": {
                "per_class": per_class,
                "seed": seed,
                "duration_s": duration_s,
                "formats": list(formats),
                "files": len(files),
            },
            "epochs": epochs,
            "torch": torch.__version__,
            "python": platform.python_version(),
            **metrics,
        },
    )
    return metrics


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m acousticsense.demo.train", description=__doc__.split("\n")[0])
    p.add_argument("--output", required=True, help="bundle folder or URI to write")
    p.add_argument("--corpus", type=Path, help="existing GTZAN-style corpus (default: generate one)")
    p.add_argument("--per-class", type=int, default=32)
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--duration-s", type=float, default=12.0)
    p.add_argument("--formats", default="wav,flac,ogg,mp3", help="formats of the generated corpus, cycled per clip")
    args = p.parse_args(argv)
    metrics = train_demo_bundle(
        args.output,
        args.corpus,
        args.per_class,
        args.epochs,
        args.seed,
        args.duration_s,
        tuple(f.strip() for f in args.formats.split(",") if f.strip()),
    )
    print(f"wrote {args.output}: {metrics}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
