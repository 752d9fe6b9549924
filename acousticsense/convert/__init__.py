"""Converters from published checkpoints to AcousticSense bundles: ``python -m acousticsense.convert --help``."""
