"""``python -m acousticsense.convert``: published checkpoints -> AcousticSense bundles.

    python -m acousticsense.convert musicnn [--wheel musicnn-0.1.0-py3-none-any.whl] [--output-dir DIR] [--name …]
    python -m acousticsense.convert ast CHECKPOINT_DIR --output BUNDLE [--version V]

``musicnn`` downloads the PyPI wheel (``pip download --no-deps musicnn==0.1.0``) unless ``--wheel`` is
given, checks its sha256 and writes the ``musicnn-msd``, ``musicnn-mtt`` and ``musicnn-msd-mtt`` bundles
(by default into the package's ``acousticsense/bundles``, reproducing the shipped ones). ``ast`` reads a
``transformers``-format Audio Spectrogram Transformer folder (``config.json`` + ``model.safetensors``,
e.g. a download of ``MIT/ast-finetuned-audioset-10-10-0.4593``) without importing transformers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from acousticsense.errors import AcousticSenseError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m acousticsense.convert", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="source", required=True)
    m = sub.add_parser("musicnn", help="musicnn's MSD/MTT checkpoints from the PyPI wheel")
    m.add_argument("--wheel", type=Path, help="the downloaded wheel (default: pip download it)")
    m.add_argument("--output-dir", type=Path, help="where the bundle folders go (default: the package's bundles/)")
    m.add_argument("--name", action="append", choices=["musicnn-msd", "musicnn-mtt", "musicnn-msd-mtt"])
    a = sub.add_parser("ast", help="a transformers-format AST checkpoint folder")
    a.add_argument("checkpoint", type=Path, help="folder with config.json and model.safetensors")
    a.add_argument("--output", required=True, help="bundle folder or URI to write")
    a.add_argument("--version", help="bundle version (default: the folder's name)")
    a.add_argument("--activation", default="auto", choices=["auto", "softmax", "sigmoid"])
    args = parser.parse_args(argv)
    try:
        if args.source == "musicnn":
            from acousticsense.convert.musicnn import convert_musicnn, download_wheel

            output_dir = args.output_dir or Path(__file__).resolve().parent.parent / "bundles"
            with tempfile.TemporaryDirectory() as tmp:
                wheel = args.wheel or download_wheel(Path(tmp))
                written = convert_musicnn(wheel, output_dir, args.name)
            for name, bundle in written.items():
                print(
                    f"{output_dir / name}: {bundle.version}, {len(bundle.labels)} tags -> {len(bundle.genres)} genres"
                )
        else:
            from acousticsense.convert.ast import convert_ast

            bundle = convert_ast(args.checkpoint, args.output, version=args.version, activation=args.activation)
            print(f"{args.output}: {bundle.version}, {len(bundle.labels)} classes -> {len(bundle.genres)} genres")
    except (AcousticSenseError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
