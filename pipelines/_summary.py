"""The end-of-job report: counts, throughput and each stage's share of the time (the article's profile)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipelines._schema import STAGES


@dataclass
class JobSummary:
    files: int
    ok: int
    errors: int
    errors_by_stage: dict[str, int]
    missing_rows: int
    audio_hours: float
    wall_s: float
    files_per_s: float
    audio_s_per_wall_s: float
    stage_seconds: dict[str, float]
    needs_review: int
    top_genres: dict[str, int]
    output: str
    model_version: str
    feature_hash: str
    plan: dict[str, Any] = field(default_factory=dict)
    skipped_existing: int = 0
    top_tags: dict[str, int] = field(default_factory=dict)  # multi-label models: tags among files' best three

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def stage_share(self) -> dict[str, float]:
        total = sum(self.stage_seconds.values()) or 1.0
        return {stage: seconds / total for stage, seconds in self.stage_seconds.items()}

    def table(self) -> str:
        lines = [
            "",
            "AcousticSense classification summary",
            "-" * 52,
            f"{'files':<28}{self.files:>12}",
            f"{'  ok':<28}{self.ok:>12}",
            f"{'  error':<28}{self.errors:>12}",
        ]
        if self.skipped_existing:
            lines.insert(4, f"{'skipped (already done)':<28}{self.skipped_existing:>12}")
        lines += [f"{'    ' + stage:<28}{count:>12}" for stage, count in sorted(self.errors_by_stage.items())]
        if self.missing_rows:
            lines.append(f"{'  MISSING ROWS':<28}{self.missing_rows:>12}")
        lines += [
            f"{'needs review':<28}{self.needs_review:>12}",
            f"{'audio hours':<28}{self.audio_hours:>12.3f}",
            f"{'wall time (s)':<28}{self.wall_s:>12.2f}",
            f"{'files / s':<28}{self.files_per_s:>12.2f}",
            f"{'audio-s / wall-s':<28}{self.audio_s_per_wall_s:>12.1f}",
            "-" * 52,
            f"{'stage':<16}{'busy s':>12}{'share':>12}",
        ]
        share = self.stage_share()
        lines += [f"{stage:<16}{self.stage_seconds[stage]:>12.2f}{share[stage]:>11.1%}" for stage in STAGES]
        lines += ["-" * 52]
        if self.top_genres:
            lines.append("top genres: " + ", ".join(f"{g} {n}" for g, n in self.top_genres.items()))
        if self.top_tags:
            lines.append("top tags (files' best 3): " + ", ".join(f"{t} {n}" for t, n in self.top_tags.items()))
        lines += [
            f"model {self.model_version}, feature hash {self.feature_hash}",
            f"predictions: {self.output}",
        ]
        return "\n".join(lines)


def summarize(
    rows: pa.Table | None,
    *,
    wall_s: float,
    expected_files: int,
    output: str,
    model_version: str,
    feature_hash: str,
    plan: dict[str, Any],
    skipped_existing: int = 0,
) -> JobSummary:
    """Build the summary from the per-file summary columns the writer stage returns."""
    if rows is None or rows.num_rows == 0:
        rows = pa.table({"status": pa.array([], pa.string())})
    status = rows.column("status").to_pylist()
    ok = status.count("ok")
    errors = len(status) - ok
    stage_counts: Counter[str] = Counter()
    if errors:
        stage_counts.update(s for s, st in zip(rows.column("error_stage").to_pylist(), status) if st == "error")
    stage_seconds = {
        stage: float(pc.sum(rows.column(f"{stage}_s")).as_py() or 0.0) if f"{stage}_s" in rows.column_names else 0.0
        for stage in STAGES
    }
    audio_s = 0.0
    genres: Counter[str] = Counter()
    tags: Counter[str] = Counter()
    review = 0
    if ok:
        mask = pc.equal(rows.column("status"), "ok")
        audio_s = float(pc.sum(pc.filter(rows.column("duration_s"), mask)).as_py() or 0.0)
        genres.update(g for g in pc.filter(rows.column("top_genre"), mask).to_pylist())
        review = int(pc.sum(pc.filter(rows.column("needs_review"), mask).cast(pa.int64())).as_py() or 0)
        if "top_tags" in rows.column_names:
            tags.update(t["tag"] for best in pc.filter(rows.column("top_tags"), mask).to_pylist() for t in best or [])
    return JobSummary(
        files=len(status),
        ok=ok,
        errors=errors,
        errors_by_stage=dict(stage_counts),
        missing_rows=max(0, expected_files - len(status)),
        audio_hours=audio_s / 3600.0,
        wall_s=wall_s,
        files_per_s=len(status) / wall_s if wall_s > 0 else 0.0,
        audio_s_per_wall_s=audio_s / wall_s if wall_s > 0 else 0.0,
        stage_seconds=stage_seconds,
        needs_review=review,
        top_genres=dict(genres.most_common(5)),
        top_tags=dict(tags.most_common(8)),
        output=output,
        model_version=model_version,
        feature_hash=feature_hash,
        plan=plan,
        skipped_existing=skipped_existing,
    )
