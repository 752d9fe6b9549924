"""``python -m acousticsense.demo.corpus``: write the corpus from the command line."""

from __future__ import annotations

import argparse
import sys

from acousticsense.config import GENRES
from acousticsense.demo.corpus.files import write_corpus
from acousticsense.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m acousticsense.demo.corpus",
        description="Write a synthetic, labelled genre corpus (one folder per genre).",
    )
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--per-class", type=int, required=True, help="clips per genre")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    parser.add_argument("--snr-db", type=float, default=None, help="add white noise at this SNR in dB")
    parser.add_argument("--duration-s", type=float, default=10.0, help="clip length in seconds (default 10)")
    parser.add_argument("--sample-rate", type=int, default=22050, help="sample rate in Hz (default 22050)")
    parser.add_argument("--formats", default="wav", help="comma-separated: wav,flac,ogg,mp3 (default wav)")
    args = parser.parse_args(argv)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    try:
        paths = write_corpus(
            args.output,
            per_class=args.per_class,
            seed=args.seed,
            snr_db=args.snr_db,
            duration_s=args.duration_s,
            sample_rate_hz=args.sample_rate,
            formats=formats,
        )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    total_s = len(paths) * round(args.duration_s * args.sample_rate) / args.sample_rate
    print(f"wrote {len(paths)} files ({len(GENRES)} classes, {total_s:.1f} s of audio) to {args.output}")
    return 0
