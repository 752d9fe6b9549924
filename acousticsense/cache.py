"""Spectrogram cache: model windows keyed by the file's content and the feature config, on any fsspec URI.

A re-run over unchanged files skips decoding and featurizing. The key is a content fingerprint, never the
path (the reference article's cache keyed on the path and served stale features for replaced files):
the object's ETag where the store gives one (S3's is a hash of the content), otherwise the file size with a
SHA-256 of its first, middle and last 64 KiB — cheap on a 60 MB WAV, where hashing every byte would
cost more than featurizing it. Either is combined with the feature hash, so a changed config misses.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from acousticsense.extract import FeaturizedAudio
from acousticsense.record import AUDIO, FileRecord, record_fields
from acousticsense.storage import filesystem, join_uri

__all__ = ["SpectrogramCache", "content_fingerprint"]

_BLOCK = 64 * 1024
# What an entry keeps: every fact the featurizer learns (the record's AUDIO fields, by the record's names)
# except the stage seconds, which belong to the run that spent them.
_NOT_RUN = {"read_s": None, "decode_s": 0.0, "resample_s": 0.0, "features_s": 0.0}
_CACHED = tuple(f.name for f in record_fields(AUDIO) if f.name not in _NOT_RUN)


def content_fingerprint(uri: str, storage_options: Mapping[str, Any] | None = None) -> str:
    """A short hex fingerprint of a file's content (ETag, or size + first/middle/last 64 KiB)."""
    fs, path = filesystem(uri, storage_options)
    info = fs.info(path)
    etag = str(info.get("ETag") or info.get("etag") or "").strip('"')
    size = int(info.get("size") or 0)
    digest = hashlib.sha256(f"{size}:{etag}".encode())
    if not etag:
        with fs.open(path, "rb") as f:
            for offset in sorted({0, max(0, size // 2 - _BLOCK // 2), max(0, size - _BLOCK)}):
                f.seek(offset)
                digest.update(f.read(_BLOCK))
    return digest.hexdigest()[:32]


class SpectrogramCache:
    """Stores :class:`FeaturizedAudio` under ``uri`` as ``<aa>/<key>.npz``.

    Args:
        uri: a local folder or fsspec URI (``s3://bucket/cache``).
        feature_hash: the bundle's feature hash; part of every key.
    """

    def __init__(self, uri: str, feature_hash: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self.uri = uri
        self.feature_hash = feature_hash
        self.storage_options = dict(storage_options or {})
        self.fs, self.root = filesystem(uri, storage_options)

    def key(self, source_uri: str) -> str:
        fingerprint = content_fingerprint(source_uri, self.storage_options)
        return hashlib.sha256(f"{fingerprint}:{self.feature_hash}".encode()).hexdigest()[:40]

    def _path(self, key: str) -> str:
        return join_uri(self.root, key[:2], f"{key}.npz")

    def get(self, key: str) -> FeaturizedAudio | None:
        """The cached entry, or ``None`` on a miss.

        An unreadable entry counts as a miss, and so does one written before the record gained a field
        (it lacks a fact a row needs; recomputing it rewrites the entry). The stage seconds of a hit are 0:
        nothing was decoded or featurized for it in this run.
        """
        path = self._path(key)
        try:
            with self.fs.open(path, "rb") as f:
                data = np.load(io.BytesIO(f.read()), allow_pickle=False)
                meta = json.loads(str(data["meta"]))
                windows = data["windows"]
        except (FileNotFoundError, KeyError, ValueError, OSError):
            return None
        facts = meta.get("record", {})
        if set(facts) != set(_CACHED):
            return None
        weights = meta.get("class_weights")
        return FeaturizedAudio(
            windows=windows,
            record=FileRecord(**facts, **_NOT_RUN),
            segment_windows=list(meta.get("segment_windows", [])),
            class_weights=None if weights is None else np.asarray(weights, np.float32),
        )

    def put(self, key: str, audio: FeaturizedAudio) -> None:
        """Store an entry; written whole and renamed into place where the store allows."""
        meta = {
            "record": {name: getattr(audio.record, name) for name in _CACHED},
            "segment_windows": list(audio.segment_windows),
            "class_weights": None if audio.class_weights is None else audio.class_weights.tolist(),
        }
        buffer = io.BytesIO()
        np.savez(buffer, windows=audio.windows, meta=np.array(json.dumps(meta)))
        path = self._path(key)
        self.fs.makedirs(join_uri(self.root, key[:2]), exist_ok=True)
        temporary = path + ".inprogress"
        with self.fs.open(temporary, "wb") as f:
            f.write(buffer.getvalue())
        self.fs.mv(temporary, path)
