"""The end-of-run summary a person reads: rows, scored, errors by reason, rows per band, pairs/s.

Counts are collected while the output is written (``DataFrame.observe``), so the summary costs no
second pass over the data and counts only this run's rows, also in append mode.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql import Column
from pyspark.sql import functions as F

from clipscore.schema.bands import ERROR_BAND, band_labels
from clipscore.schema.errors import ERROR_CODES  # the one registry of row error categories
from clipscore.jobs.columns import error_code


@dataclass
class RunSummary:
    rows: int
    scored: int
    errors_by_reason: dict[str, int]
    rows_per_band: dict[str, int]
    seconds: float
    skipped: int = 0
    extra: dict = field(default_factory=dict)
    files_written: int | None = None     # data files this run wrote (None: not known)
    bytes_written: int | None = None     # their bytes in all (None: sizes not known)

    @property
    def mean_file_bytes(self) -> int | None:
        if not self.files_written or self.bytes_written is None:
            return None
        return self.bytes_written // self.files_written

    @property
    def errors(self) -> int:
        return self.rows - self.scored

    @property
    def pairs_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def format(self) -> str:
        lines = [
            f"rows: {self.rows:,}   scored: {self.scored:,}   errors: {self.errors:,}"
            + (f"   skipped (already scored): {self.skipped:,}" if self.skipped else ""),
            f"time: {self.seconds:.1f}s   throughput: {self.pairs_per_second:,.1f} pairs/s",
        ]
        if self.errors_by_reason:
            lines.append("errors by reason:")
            width = max(len(k) for k in self.errors_by_reason)
            for reason, count in sorted(self.errors_by_reason.items(), key=lambda kv: (-kv[1], kv[0])):
                lines.append(f"  {reason:<{width}}  {count:>8,}")
        lines.append("rows per score band:")
        width = max((len(k) for k in self.rows_per_band), default=5)
        for band, count in self.rows_per_band.items():
            bar = "#" * (round(40 * count / self.rows) if self.rows else 0)
            lines.append(f"  {band:<{width}}  {count:>8,}  {bar}")
        if self.files_written is not None:
            size = ("" if self.mean_file_bytes is None else
                    f", {format_bytes(self.bytes_written)} in all, mean {format_bytes(self.mean_file_bytes)}")
            lines.append(f"files written: {self.files_written:,}{size}")
        for key, value in self.extra.items():
            lines.append(f"{key}: {value}")
        return "\n".join(lines)


def format_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} TiB"


def summary_metrics(edges) -> list[Column]:
    """Aggregate expressions for ``DataFrame.observe``: one count per band and per error category."""
    code = error_code("score_error")
    metrics = [F.count(F.lit(1)).alias("rows"), F.count("similarity").alias("scored")]
    for label in [*band_labels(edges), ERROR_BAND]:
        metrics.append(F.sum(F.when(F.col("score_band") == label, 1).otherwise(0)).alias(f"band::{label}"))
    for reason in ERROR_CODES:
        metrics.append(F.sum(F.when(code == reason, 1).otherwise(0)).alias(f"error::{reason}"))
    metrics.append(
        F.sum(F.when(F.col("score_error").isNotNull() & ~code.isin(*ERROR_CODES), 1).otherwise(0)).alias("error::other")
    )
    return metrics


def summary_from_metrics(metrics: dict, seconds: float, skipped: int = 0) -> RunSummary:
    bands = {k.split("::", 1)[1]: int(v or 0) for k, v in sorted(metrics.items()) if k.startswith("band::")}
    errors = {k.split("::", 1)[1]: int(v or 0) for k, v in metrics.items() if k.startswith("error::") and v}
    return RunSummary(
        rows=int(metrics.get("rows") or 0),
        scored=int(metrics.get("scored") or 0),
        errors_by_reason=errors,
        rows_per_band=bands,
        seconds=seconds,
        skipped=skipped,
    )
