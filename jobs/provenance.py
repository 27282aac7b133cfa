"""Provenance: which model, revision, precision, band edges and clipscore version produced a score.

Recorded in two places, because they answer two different questions:

* **Delta table properties** (``clipscore.*``) describe the *latest* run that wrote the table. Both
  ``clipscore score`` (Delta output) and ``clipscore merge`` set them. Read them with
  ``SHOW TBLPROPERTIES`` or ``table_provenance(spark, target)``.
* **Per-row columns** (written by ``clipscore merge`` only) describe each row, because a merged
  table accumulates rows from many runs, possibly with different models::

      score_model, score_model_revision, score_precision  -- what scored the row
      score_fingerprint  -- short hash of the score-affecting options and band edges
      score_input_hash   -- SHA-256 of the image and caption that were scored
      scored_at          -- when (UTC); one timestamp per run

  The fingerprint and input hash make incremental runs possible: a row whose stored fingerprint and
  input hash equal the current ones needs no re-scoring.

``score_precision`` is the *requested* precision; ``auto`` resolves on each executor (fp16 on a GPU,
fp32 on CPU), which the driver cannot know.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from clipscore import __version__
from clipscore.config import ScoreConfig
from clipscore.jobs.tables import col, is_table_name, table_identifier

log = logging.getLogger("clipscore")

PROPERTY_PREFIX = "clipscore."
PROVENANCE_COLUMNS = (
    "score_model",
    "score_model_revision",
    "score_precision",
    "score_fingerprint",
    "score_input_hash",
    "scored_at",
)


def fingerprint_options(cfg: ScoreConfig) -> dict:
    """What makes a stored score reusable: the score-affecting options plus the band edges."""
    return {**cfg.score_fingerprint, "band_edges": [float(e) for e in cfg.band_edges]}


def score_fingerprint(cfg: ScoreConfig) -> str:
    """A short, stable hash of ``fingerprint_options``; equal strings mean a score can be reused."""
    text = json.dumps(fingerprint_options(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def input_hash(cfg: ScoreConfig) -> Column:
    """SHA-256 over the image (bytes or reference string) and the caption; nulls hash distinctly."""
    def part(name: str) -> Column:
        return F.coalesce(F.sha2(col(name).cast("binary"), 256), F.lit("null"))

    return F.sha2(F.concat_ws("|", part(cfg.image_col), part(cfg.caption_col)), 256)


def with_provenance_columns(df: DataFrame, cfg: ScoreConfig, scored_at) -> DataFrame:
    """``df`` plus the per-row provenance columns; ``scored_at`` is one timestamp for the whole run."""
    return df.withColumns(
        {
            "score_model": F.lit(cfg.model),
            "score_model_revision": F.lit(cfg.model_revision).cast("string"),
            "score_precision": F.lit(cfg.precision),
            "score_fingerprint": F.lit(score_fingerprint(cfg)),
            "score_input_hash": input_hash(cfg),
            "scored_at": F.lit(scored_at).cast("timestamp"),
        }
    )


def provenance_properties(cfg: ScoreConfig) -> dict[str, str]:
    """The ``clipscore.*`` table properties for a run with ``cfg``."""
    return {
        "clipscore.version": __version__,
        "clipscore.model": cfg.model,
        "clipscore.model_revision": cfg.model_revision or "",
        "clipscore.precision": cfg.precision,
        "clipscore.band_edges": json.dumps([float(e) for e in cfg.band_edges]),
        "clipscore.score_fingerprint": score_fingerprint(cfg),
        "clipscore.score_options": json.dumps(fingerprint_options(cfg), sort_keys=True),
    }


def delta_identifier(target: str) -> str:
    """SQL name of a Delta target: the validated catalog name, each part quoted, or ``delta.`path``` for a path."""
    if is_table_name(target):
        return table_identifier(target)
    if "://" not in target and not target.startswith("dbfs:"):
        target = os.path.abspath(target)  # delta.`path` does not resolve relative paths
    return "delta.`" + target.replace("`", "``") + "`"


def table_provenance(spark: SparkSession, target: str) -> dict[str, str]:
    """The ``clipscore.*`` properties of a Delta table (empty when it has none)."""
    rows = spark.sql(f"SHOW TBLPROPERTIES {delta_identifier(target)}").collect()
    return {r["key"]: r["value"] for r in rows if r["key"].startswith(PROPERTY_PREFIX)}


def record_provenance(spark: SparkSession, target: str, cfg: ScoreConfig) -> None:
    """Set the ``clipscore.*`` properties on a Delta table; no commit when they are already current."""
    wanted = provenance_properties(cfg)
    if table_provenance(spark, target) == wanted:
        return
    assignments = ", ".join(f"{_sql_string(k)} = {_sql_string(v)}" for k, v in wanted.items())
    spark.sql(f"ALTER TABLE {delta_identifier(target)} SET TBLPROPERTIES ({assignments})")
    log.info("recorded provenance on %s: model=%s precision=%s", target, cfg.model, cfg.precision)


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
