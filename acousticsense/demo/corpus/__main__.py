"""``python -m acousticsense.demo.corpus --output DIR --per-class N [--seed S] ...``"""

from acousticsense.demo.corpus.cli import main

if __name__ == "__main__":  # importing the module (pkgutil.walk_packages, docs tools) must not run the CLI
    raise SystemExit(main())
