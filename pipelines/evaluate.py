"""Evaluate a bundle with the same Ray pipeline as ``pipelines.classify``: on a labelled folder, or for
robustness on any folder of audio (no labels needed).

Labelled folder (GTZAN-style ``<genre>/<clip>``)::

    python -m pipelines.evaluate --input data/labelled --output out/eval [--model BUNDLE] [--segments 3]
        [--enhance denoise] [--fit-temperature]

Accuracy is that of ``top_genre`` over the genres the bundle can name (``bundle.genres``; for a tagger
such as musicnn, the genres its tags map to). A folder is matched to a genre by its name, ignoring case
and punctuation (``hiphop`` -> ``Hip-Hop``). Files in folders that name no genre of the bundle are not
scored and are reported per folder under ``unnameable``. Writes under ``--output``: ``predictions/``
(the classify job's Parquet), ``metrics.json`` (accuracy, macro-F1, per-genre precision/recall/F1,
confusion matrix, ECE, NLL, needs-review rate and the accuracy of flagged vs unflagged files),
``confusion_matrix.png`` and ``reliability.png``. With ``--fit-temperature`` it fits the bundle's
temperature on these files (minimising NLL through the bundle's own output head, softmax or sigmoid),
reports the metrics after calibration too, and writes a new bundle with a new version to
``--bundle-output``.

Robustness without labels::

    python -m pipelines.evaluate --robustness --input data/music --output out/robust [--model BUNDLE]
        [--enhance both] [--limit 30] [--clip-s 30] [--seed 0]

For every file it writes copies under ``OUTPUT/copies/<condition>/<relative path>.wav|.mp3``: the
clean clip (the middle ``--clip-s`` seconds, decoded and downmixed to mono, at the file's own rate:
what the model would analyse), the clip with white and with pink noise at 10 dB and 0 dB SNR (against
the clean clip's power, see :mod:`acousticsense.robustness`), and the clip re-encoded as a 32 kbit/s
MP3. The classify job then runs over all copies once without enhancement and once with ``--enhance``
(``both`` when not given: the article's spectral subtraction + compression). The reference is the clean
copy without enhancement; per condition and enhancement ``metrics.json`` gives how often ``top_genre``
agrees with it, how often the top-3 tags agree (the same set of three; top-3 genres for single-label
bundles), the same two against the clean copy under the same enhancement, and the needs-review rate.
``files.tsv`` has every file's answers. The noise is deterministic (``--seed``). With ``--resume``, a
second run on the same output with another ``--enhance`` classifies only what is new (the copies must
be the same: same inputs, ``--limit``, ``--clip-s`` and ``--seed``, recorded in ``copies.json``).
"""

from __future__ import annotations

import io
import json
import re
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from acousticsense import (
    AcousticSenseError,
    audio_info,
    choose_excerpt,
    downmix,
    filesystem,
    is_remote,
    join_uri,
    list_files,
    load_bundle,
    open_binary,
    predict_file,
    read_excerpt,
    resample,
    write_bundle,
)
from acousticsense.evaluation import (
    classification_metrics,
    fit_temperature,
    plot_confusion_matrix,
    plot_reliability_diagram,
)
from acousticsense.robustness import add_noise_at_snr, agreement, encode_mp3, pink_noise, white_noise
from pipelines.classify import JobOptions, build_parser, connect_ray, options_from_args, run_classification

__all__ = [
    "CONDITIONS",
    "Condition",
    "enhance_settings",
    "evaluate",
    "genre_for_folder",
    "label_of",
    "main",
    "robustness",
]


def label_of(path: str) -> str:
    """The parent folder's name: ``…/Jazz/clip_0001.wav`` -> ``Jazz``."""
    return PurePosixPath(path.split("://", 1)[-1]).parent.name


def genre_for_folder(folder: str, genres: Sequence[str]) -> str | None:
    """The genre a folder name stands for: an exact match, else one ignoring case and punctuation.

    >>> genre_for_folder("hiphop", ["Hip-Hop", "Jazz"])
    'Hip-Hop'
    >>> genre_for_folder("disco", ["Hip-Hop", "Jazz"]) is None
    True
    """
    if folder in genres:
        return folder
    matches = [g for g in genres if _folded(g) == _folded(folder)]
    return matches[0] if len(matches) == 1 else None


def _folded(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.casefold())


def evaluate(options: JobOptions, fit: bool = False, bundle_output: str | None = None, progress: bool = True) -> dict:
    """Run the classify job on a labelled folder and compute metrics (and a calibrated bundle when ``fit``)."""
    started = time.perf_counter()
    predictions_uri = join_uri(options.output, "predictions")
    job = replace(options, output=predictions_uri, keep_window_logits=fit, overwrite=True, resume=False)
    summary = run_classification(job, progress=progress)
    # weights only to write a calibrated bundle
    bundle = load_bundle(options.model, options.storage_options, weights=fit, overrides=options.overrides())
    columns = ["path", "status", "probabilities", "needs_review"] + (["window_logits"] if fit else [])
    rows = _read_predictions(predictions_uri, options.storage_options, columns)

    genres = bundle.genres
    index = {genre: i for i, genre in enumerate(genres)}
    folders = Counter(label_of(r["path"]) for r in rows if r["status"] == "ok")
    folder_genre = {folder: genre_for_folder(folder, genres) for folder in folders}
    ok = [r for r in rows if r["status"] == "ok" and folder_genre[label_of(r["path"])] is not None]
    unnameable = {folder: n for folder, n in sorted(folders.items()) if folder_genre[folder] is None}
    if not ok:
        raise AcousticSenseError(
            f"no file under {options.inputs} sits in a folder named after one of the bundle's genres "
            f"({', '.join(genres)}); expected <genre>/<clip> folders, found {sorted(folders) or 'none'}"
        )
    y_true = np.array([index[folder_genre[label_of(r["path"])]] for r in ok])  # type: ignore[index]
    probs = np.array([r["probabilities"] for r in ok], dtype=np.float32)
    review = np.array([r["needs_review"] for r in ok])
    report: dict[str, Any] = {
        "model_version": bundle.version,
        "feature_hash": bundle.feature_hash,
        "temperature": bundle.postprocess.temperature,
        "multi_label": bundle.output_head.multi_label,
        "genres": list(genres),
        "files": summary.files,
        "errors": summary.errors,
        # Folder -> genre for every folder that was scored; files in the others are counted, not scored.
        "folder_genres": {f: g for f, g in sorted(folder_genre.items()) if g is not None},
        "unnameable": unnameable,
        "unnameable_files": sum(unnameable.values()),
        "wall_s": None,
        **classification_metrics(y_true, probs, genres, review),
    }
    if fit:
        logits = [np.asarray(r["window_logits"], dtype=np.float32) for r in ok]
        head = bundle.output_head
        temperature = fit_temperature(logits, y_true, head, bundle.postprocess.aggregation)
        calibrated = bundle.with_postprocess(temperature=temperature)
        calibrated = replace(
            calibrated,
            version=f"{bundle.version}-t{temperature:.3f}",
            provenance={
                **bundle.provenance,
                "calibrated_from": bundle.version,
                "temperature_fitted_on": {"input": options.inputs, "files": len(ok)},
            },
        )
        refit = [predict_file(lg, head, calibrated.postprocess) for lg in logits]
        after = classification_metrics(
            y_true,
            np.array([p.probabilities for p in refit]),
            genres,
            np.array([p.needs_review for p in refit]),
        )
        target = bundle_output or join_uri(options.output, "bundle")
        write_bundle(target, calibrated, options.storage_options)
        report["calibration"] = {
            "fitted_temperature": temperature,
            "new_bundle": target,
            "new_version": calibrated.version,
            "note": "fitted and measured on the same files (in-sample); hold out a split for an unbiased figure",
            "after": {k: after[k] for k in ("accuracy", "macro_f1", "ece", "nll", "needs_review_rate")},
        }
    report["wall_s"] = round(time.perf_counter() - started, 2)
    _write_outputs(options, report, y_true, probs, genres)
    return report


# --------------------------------------------------------------------------------------------------
# robustness without labels


@dataclass(frozen=True)
class Condition:
    """One way of degrading a clean clip: added noise at an SNR, or a lossy re-encode at a bitrate."""

    name: str
    kind: str  # "clean" | "white" | "pink" | "mp3"
    snr_db: float | None = None
    bitrate_bps: int | None = None

    @property
    def extension(self) -> str:
        return "mp3" if self.kind == "mp3" else "wav"


CONDITIONS: tuple[Condition, ...] = (
    Condition("clean", "clean"),
    Condition("white-10dB", "white", snr_db=10.0),
    Condition("white-0dB", "white", snr_db=0.0),
    Condition("pink-10dB", "pink", snr_db=10.0),
    Condition("pink-0dB", "pink", snr_db=0.0),
    Condition("mp3-32k", "mp3", bitrate_bps=32_000),
)
_NOISE = {"white": white_noise, "pink": pink_noise}
_MP3_RATES_HZ = frozenset({8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000})
_MP3_FALLBACK_RATE_HZ = 44_100  # for files at a rate MP3 cannot store (e.g. 96 kHz)
_COPIES_VERSION = 1  # bump when the copies of the same recipe would change (noise, layout, encoder)


def enhance_settings(enhance: str | None) -> list[str]:
    """The enhancement settings a robustness run compares: always ``none``, plus the one asked for
    (``both``, the article's denoise + compress, when none is given)."""
    chosen = enhance or "both"
    return ["none"] if chosen == "none" else ["none", chosen]


def robustness(
    options: JobOptions,
    *,
    limit: int | None = None,
    clip_s: float | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Make degraded copies of every file under ``options.inputs``, classify them, and measure agreement.

    Args:
        options: the classify job's options; ``options.enhance`` picks the enhancement compared with
            none (see :func:`enhance_settings`), the rest applies to every run.
        limit: use only the first ``limit`` files in listing order.
        clip_s: seconds per copy, from the middle of each file; ``None``: the bundle's excerpt times its
            segments (so the job analyses the whole copy); ``0``: whole files.
        seed: base seed of the noise (each file's noise also depends on its relative path).

    Returns:
        The report written to ``OUTPUT/metrics.json``.

    Raises:
        AcousticSenseError: no file could be copied, or no clean copy could be classified.
    """
    started = time.perf_counter()
    bundle = load_bundle(options.model, options.storage_options, weights=False, overrides=options.overrides())
    if clip_s is None:
        clip_s = bundle.features.excerpt_s * bundle.features.segments
    if clip_s < 0 or (limit is not None and limit < 1):
        raise ValueError(f"clip_s must be >= 0 and limit >= 1, got clip_s={clip_s}, limit={limit}")
    sources = _sources(options, limit)
    if not sources:
        raise FileNotFoundError(f"no files found under {options.inputs}")
    copies_uri = join_uri(options.output, "copies")
    recipe = {"sources": [m["source"] for m in sources], "clip_s": clip_s, "seed": seed, "version": _COPIES_VERSION}
    _check_resume(options, recipe)
    made = _make_all_copies(sources, copies_uri, options.storage_options, clip_s, seed)
    copied = [m for m in made if m["status"] == "ok"]
    if not copied:
        first = made[0]
        raise AcousticSenseError(f"could not copy any of {len(made)} files; e.g. {first['source']}: {first['error']}")

    fs, root = filesystem(options.output, options.storage_options)
    with fs.open(join_uri(root, "copies.json"), "w") as f:
        json.dump(recipe, f, indent=2)

    # One classify run per enhancement setting over every copy; a copy's URI tells its condition and file.
    where = {
        join_uri(copies_uri, c.name, f"{m['key']}.{c.extension}"): (c.name, m["key"])
        for m in copied
        for c in CONDITIONS
    }
    head = bundle.output_head
    answers: dict[tuple[str, str], dict[str, _Answer]] = {}
    runs: dict[str, dict[str, Any]] = {}
    settings = enhance_settings(options.enhance)
    for setting in settings:
        predictions_uri = join_uri(options.output, "predictions", f"enhance-{setting}")
        job = replace(
            options,
            inputs=list(where),
            output=predictions_uri,
            extensions=None,
            enhance=setting,
            overwrite=not options.resume,
            resume=options.resume,
            keep_window_logits=False,
        )
        summary = run_classification(job, progress=progress)
        runs[setting] = {
            "files": summary.files,
            "errors": summary.errors,
            "reused": summary.skipped_existing,  # --resume: copies classified by an earlier run
            "wall_s": round(summary.wall_s, 2),
        }
        columns = ["path", "status", "top_genre", "probabilities", "tags", "needs_review"]
        for row in _read_predictions(predictions_uri, options.storage_options, columns):
            condition, key = where[row["path"]]
            per_file = answers.setdefault((setting, condition), {})
            if row["status"] == "ok":
                per_file[key] = _answer(row, head.genres, head.multi_label)

    reference = answers.get(("none", "clean"), {})
    if not reference:
        raise AcousticSenseError("no clean copy could be classified: nothing to compare against")
    results = []
    for setting in settings:
        same_enhance = answers.get((setting, "clean"), {})
        for condition in CONDITIONS:
            got = answers.get((setting, condition.name), {})
            results.append(
                {
                    "condition": condition.name,
                    "enhance": setting,
                    "errors": len(copied) - len(got),
                    **_agreements(reference, got, prefix=""),
                    **_agreements(same_enhance, got, prefix="same_enhance_"),
                    "needs_review_rate": _mean([a.needs_review for a in got.values()]),
                }
            )
    report: dict[str, Any] = {
        "mode": "robustness",
        "model_version": bundle.version,
        "feature_hash": bundle.feature_hash,
        "multi_label": head.multi_label,
        "genres": list(head.genres),
        "top3_of": "tags" if head.multi_label else "genres",
        "reference": {"condition": "clean", "enhance": "none"},
        "sources": len(sources),
        "copied": len(copied),
        "copy_errors": {m["source"]: m["error"] for m in made if m["status"] != "ok"},
        "clip_s": clip_s,
        "audio_hours": round(sum(m["duration_s"] for m in copied) / 3600, 4),
        "seed": seed,
        "conditions": [
            {k: v for k, v in vars(c).items() if v is not None} | {"extension": c.extension} for c in CONDITIONS
        ],
        "enhance": settings,
        "runs": runs,
        "clean_top_genres": dict(Counter(a.top_genre for a in reference.values()).most_common()),
        "results": results,
        "wall_s": round(time.perf_counter() - started, 2),
    }
    _write_robustness_outputs(options, report, copied, answers, settings)
    return report


@dataclass(frozen=True)
class _Answer:
    top_genre: str
    ranking: tuple[str, ...]  # tags (multi-label) or genres, best first
    needs_review: bool


def _answer(row: dict[str, Any], genres: Sequence[str], multi_label: bool) -> _Answer:
    if multi_label:
        ranking = tuple(t["tag"] for t in row["tags"])
    else:
        order = np.argsort(-np.asarray(row["probabilities"]), kind="stable")
        ranking = tuple(genres[i] for i in order)
    return _Answer(row["top_genre"], ranking, bool(row["needs_review"]))


def _agreements(reference: dict[str, _Answer], got: dict[str, _Answer], prefix: str) -> dict[str, Any]:
    """Agreement over the files both runs classified; ``None`` when there are none."""
    keys = sorted(reference.keys() & got.keys())
    if not keys:
        return {f"{prefix}files": 0, f"{prefix}top_genre_agreement": None, f"{prefix}top3_agreement": None}
    return {
        f"{prefix}files": len(keys),
        f"{prefix}top_genre_agreement": agreement(
            [reference[k].top_genre for k in keys], [got[k].top_genre for k in keys]
        ),
        f"{prefix}top3_agreement": agreement([reference[k].ranking for k in keys], [got[k].ranking for k in keys], k=3),
    }


def _mean(values: Sequence[bool]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _check_resume(options: JobOptions, recipe: dict[str, Any]) -> None:
    """With ``--resume``, predictions already under ``OUTPUT/predictions`` are kept (e.g. to add another
    ``--enhance`` without classifying the copies without enhancement again). They are only valid for
    the same copies, so the recipe of the copies (sources, clip, seed) must be the one recorded."""
    if not options.resume:
        return
    fs, root = filesystem(options.output, options.storage_options)
    path = join_uri(root, "copies.json")
    previous = json.loads(fs.cat_file(path)) if fs.exists(path) else None
    if previous != recipe:
        raise ValueError(
            f"--resume keeps the predictions under {options.output}, but they were made from other copies "
            "(different inputs, --limit, --clip-s or --seed, or none recorded); drop --resume to start afresh"
        )


def _sources(options: JobOptions, limit: int | None) -> list[dict[str, str]]:
    """Every input file with a key for its copies: its path under its input (prefixed by the input's
    position when there are several inputs), so copies keep recognisable names and never collide."""
    items: list[dict[str, str]] = []
    seen: set[str] = set()
    for n, uri in enumerate(options.inputs):
        root = filesystem(uri, options.storage_options)[1].rstrip("/")
        for path in list_files(uri, options.extensions, options.storage_options):
            if path in seen:
                continue
            seen.add(path)
            inner = path.split("://", 1)[-1] if is_remote(path) else path
            relative = inner[len(root) + 1 :] if inner.startswith(root + "/") else PurePosixPath(inner).name
            items.append({"source": path, "key": f"input{n}/{relative}" if len(options.inputs) > 1 else relative})
            if limit is not None and len(items) >= limit:
                return items
    return items


def _make_all_copies(
    sources: list[dict[str, str]], copies_uri: str, storage_options: dict[str, Any], clip_s: float, seed: int
) -> list[dict[str, Any]]:
    """Write every file's copies with Ray tasks (one file per task); one status row per file."""
    import ray

    # The function by its importable name: under `python -m pipelines.evaluate` this module is __main__,
    # whose functions Ray would otherwise ship by value, with everything they refer to.
    from pipelines.evaluate import _make_copies as make_copies

    ds = ray.data.from_items(sources, override_num_blocks=max(1, min(len(sources), 256)))
    ds = ds.map(
        make_copies,
        fn_kwargs=dict(copies_uri=copies_uri, storage_options=storage_options, clip_s=clip_s, seed=seed),
        num_cpus=1,
    )
    return sorted(ds.take_all(), key=lambda row: row["key"])


def _make_copies(
    item: dict[str, str], *, copies_uri: str, storage_options: dict[str, Any], clip_s: float, seed: int
) -> dict[str, Any]:
    """Decode the middle ``clip_s`` seconds of one file, downmix it, and write one copy per condition.

    A file that cannot be decoded (or is silent: no SNR is defined against silence) gives an error
    row instead of copies.
    """
    source, key = item["source"], item["key"]
    row: dict[str, Any] = {"source": source, "key": key, "status": "ok", "error": "", "duration_s": 0.0}
    try:
        audio = open_binary(source, storage_options) if is_remote(source) else source
        info = audio_info(audio)
        offset_s, duration_s = choose_excerpt(info.duration_s, clip_s, "middle") if clip_s else (0.0, None)
        waveform, rate = read_excerpt(audio, offset_s, duration_s)
        clean = downmix(waveform)
        fs, root = filesystem(copies_uri, storage_options)
        for condition in CONDITIONS:
            data = _degrade(clean, rate, condition, noise_seed=[seed, zlib.crc32(key.encode())])
            target = join_uri(root, condition.name, f"{key}.{condition.extension}")
            fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
            with fs.open(target, "wb") as f:
                f.write(data)
        row["duration_s"] = len(clean) / rate
    except Exception as e:  # noqa: BLE001 - one bad file must not stop the others: it is reported
        row.update(status="error", error=f"{type(e).__name__}: {e}")
    return row


def _degrade(clean: np.ndarray, rate: int, condition: Condition, noise_seed: list[int]) -> bytes:
    """The bytes of one copy: float32 WAV (no clipping whatever the noise level) or an MP3.

    The noise generator is seeded with ``noise_seed`` plus the noise kind, not the level: the 10 dB and
    0 dB copies of a file carry the same noise at two gains. The WAV is written by scipy, whose float
    files have no PEAK chunk: libsndfile's carries a timestamp, so equal audio would give unequal bytes.
    """
    from scipy.io import wavfile

    if condition.kind == "mp3":
        bitrate = condition.bitrate_bps or 32_000
        if rate not in _MP3_RATES_HZ:
            clean, rate = resample(clean, rate, _MP3_FALLBACK_RATE_HZ), _MP3_FALLBACK_RATE_HZ
        return encode_mp3(clean, rate, bitrate)
    signal = clean
    if condition.kind in _NOISE:
        rng = np.random.default_rng([*noise_seed, list(_NOISE).index(condition.kind)])
        signal = add_noise_at_snr(clean, _NOISE[condition.kind](len(clean), rng), condition.snr_db or 0.0)
    buffer = io.BytesIO()
    wavfile.write(buffer, rate, np.ascontiguousarray(signal, dtype=np.float32))
    return buffer.getvalue()


def _read_predictions(uri: str, storage_options: dict[str, Any], columns: list[str]) -> list[dict[str, Any]]:
    fs, root = filesystem(uri, storage_options)
    shards = fs.glob(join_uri(root, "part-*.parquet"))
    return pq.ParquetDataset(shards, filesystem=fs).read(columns=columns).to_pylist()


def _write_outputs(options: Any, report: dict, y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str]) -> None:
    fs, root = filesystem(options.output, options.storage_options)
    with fs.open(join_uri(root, "metrics.json"), "w") as f:
        json.dump(report, f, indent=2)
    with tempfile.TemporaryDirectory() as tmp:  # matplotlib writes local files; copy them wherever output is
        pictures = {
            "confusion_matrix.png": lambda p: plot_confusion_matrix(report["confusion_matrix"], labels, p),
            "reliability.png": lambda p: plot_reliability_diagram(probs, y_true, p),
        }
        for name, draw in pictures.items():
            local = Path(tmp) / name
            draw(local)
            fs.put_file(str(local), join_uri(root, name))


def _write_robustness_outputs(
    options: JobOptions,
    report: dict,
    copied: list[dict[str, Any]],
    answers: dict[tuple[str, str], dict[str, _Answer]],
    settings: list[str],
) -> None:
    """``metrics.json`` and ``files.tsv``: one line per file, its top genre (or ``error``) in every run."""
    fs, root = filesystem(options.output, options.storage_options)
    with fs.open(join_uri(root, "metrics.json"), "w") as f:
        json.dump(report, f, indent=2)
    runs = [(setting, c.name) for setting in settings for c in CONDITIONS]
    lines = ["\t".join(["key", "source", "clean_top3"] + [f"{c}/{s}" for s, c in runs])]
    for m in copied:
        reference = answers.get(("none", "clean"), {}).get(m["key"])
        cells = [
            m["key"],
            m["source"],
            ",".join(reference.ranking[:3]) if reference else "",
            *(getattr(answers.get(run, {}).get(m["key"]), "top_genre", "error") for run in runs),
        ]
        lines.append("\t".join(cells))
    with fs.open(join_uri(root, "files.tsv"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    parser.prog = "python -m pipelines.evaluate"
    parser.description = (
        "Evaluate a bundle on a labelled folder (genres from parent folder names), or with --robustness on "
        "any folder: agreement of noisy and re-encoded copies with the clean files."
    )
    parser.add_argument("--fit-temperature", action="store_true", help="fit the temperature and write a new bundle")
    parser.add_argument(
        "--bundle-output", metavar="URI", help="where the calibrated bundle goes (default OUTPUT/bundle)"
    )
    robust = parser.add_argument_group("robustness without labels")
    robust.add_argument(
        "--robustness",
        action="store_true",
        help="copy each file clean, with white/pink noise at 10 and 0 dB SNR and as a 32 kbit/s MP3; classify "
        "them without and with --enhance (default: both); report agreement with the clean files",
    )
    robust.add_argument("--limit", type=int, metavar="N", help="only the first N files in listing order")
    robust.add_argument(
        "--clip-s",
        type=float,
        metavar="S",
        help="seconds per copy, from the middle of each file (default: the bundle's excerpt; 0: whole files)",
    )
    robust.add_argument("--seed", type=int, default=0, help="seed of the added noise (default 0)")
    args = parser.parse_args(argv)
    if not args.robustness and (args.limit is not None or args.clip_s is not None):
        parser.error("--limit and --clip-s apply to --robustness only")
    if args.robustness and (args.fit_temperature or args.bundle_output):
        parser.error("--fit-temperature needs labels: it does not combine with --robustness")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be >= 1, got {args.limit}")
    if args.clip_s is not None and args.clip_s < 0:
        parser.error(f"--clip-s must be >= 0, got {args.clip_s}")
    try:
        options = options_from_args(args)
        connect_ray()
        if args.robustness:
            report = robustness(
                options, limit=args.limit, clip_s=args.clip_s, seed=args.seed, progress=not args.no_progress
            )
            print(_format_robustness(report, options.output))
        else:
            report = evaluate(
                options, fit=args.fit_temperature, bundle_output=args.bundle_output, progress=not args.no_progress
            )
            print(_format(report, options.output))
    except (AcousticSenseError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _format(report: dict, output: str) -> str:
    lines = [
        "",
        f"evaluation of {report['model_version']} on {report['n']} labelled files "
        f"({report['errors']} errors, {report['unnameable_files']} in folders that name none of its genres)",
        f"accuracy {report['accuracy']:.4f}   macro-F1 {report['macro_f1']:.4f}   "
        f"ECE {report['ece']:.4f}   NLL {report['nll']:.4f}   needs review {report['needs_review_rate']:.1%}",
    ]
    if report["unnameable"]:
        folders = ", ".join(f"{folder} ({n})" for folder, n in report["unnameable"].items())
        lines.append(f"not scored (the bundle cannot name these): {folders}")
        lines.append(f"genres it can name: {', '.join(report['genres'])}")
    if "calibration" in report:
        c = report["calibration"]
        a = c["after"]
        lines.append(
            f"temperature {c['fitted_temperature']:.3f}: accuracy {a['accuracy']:.4f}  ECE {a['ece']:.4f}  "
            f"NLL {a['nll']:.4f}  -> new bundle {c['new_bundle']} ({c['new_version']})"
        )
    lines.append(f"metrics and pictures: {output}")
    return "\n".join(lines)


def _format_robustness(report: dict, output: str) -> str:
    """The results as a Markdown table (it reads in a terminal and pastes into a document)."""

    def share(value: float | None) -> str:
        return "–" if value is None else f"{value:.1%}"

    top3 = "top-3 tags" if report["multi_label"] else "top-3 genres"
    lines = [
        "",
        f"robustness of {report['model_version']} on {report['copied']} files: {report['audio_hours']:.2f} h of "
        + (f"clips of up to {report['clip_s']:g} s" if report["clip_s"] else "whole files")
        + f" ({len(report['copy_errors'])} could not be copied)",
        "reference: the clean copy without enhancement",
        "",
        f"| condition | enhance | files | top genre agrees | {top3} agree | "
        f"vs clean, same enhance: top genre | {top3} | needs review |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['condition']} | {r['enhance']} | {r['files']} | {share(r['top_genre_agreement'])} | "
            f"{share(r['top3_agreement'])} | {share(r['same_enhance_top_genre_agreement'])} | "
            f"{share(r['same_enhance_top3_agreement'])} | {share(r['needs_review_rate'])} |"
        )
    lines += ["", f"metrics.json, files.tsv and the copies: {output}"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
