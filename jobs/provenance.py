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

``score_device`` and ``score_precision`` record what actually ran, resolved on the executor
(``auto`` is fp16 on a GPU, fp32 on CPU), and so does the fingerprint: a CPU fp32 run and a GPU fp16
run never share one, so an incremental merge never mixes them. The driver predicts this run's
fingerprint (``expected_runtime``) to decide what to skip; a wrong guess only re-scores rows, never
keeps a score made differently. A model from the hub is pinned to the commit the driver resolved
(``score_model_revision``), so every executor loads the same weights.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from clipscore import __version__
from clipscore.config.job import ScoreConfig
from clipscore.models import computation_version
# delta_identifier lives with the other names (clipscore.jobs.names); notebooks and tests import it from here.
from clipscore.jobs.names import col, delta_identifier, is_table_name

log = logging.getLogger("clipscore")

PROPERTY_PREFIX = "clipscore."
NOTHING_RAN = ("none", "none")  # (device, precision) recorded when no row reached an executor
PROVENANCE_COLUMNS = (
    "score_model",
    "score_model_revision",
    "score_device",
    "score_precision",
    "score_fingerprint",
    "score_input_hash",
    "scored_at",
)


def fingerprint_options(cfg: ScoreConfig) -> dict:
    """What makes a stored score reusable, besides the runtime: model, revision, pixel options, bands."""
    options = {"model": cfg.model, "model_revision": cfg.model_revision, "gpu_decode": cfg.gpu_decode}
    if cfg.multi_model:  # one model keeps the keys tables scored before multi-model runs carry
        options["models"] = [[m.name, m.model, m.revision] for m in cfg.models]
    versions = {m.name: v for m in cfg.models if (v := computation_version(m.model, m.revision)) > 1}
    if versions:  # SigLIP scored before its text side was fed as trained (version 1) is scored again
        options["computation"] = versions
    if cfg.band_column != "similarity":
        options["band_column"] = cfg.band_column
    if cfg.write_embeddings:  # rows scored without embeddings are scored again to get them
        options["embeddings"] = cfg.embedding_dtype if cfg.embedding_format == "binary" else "array"
    if cfg.preprocess == "exact":
        # Tables scored before `preprocess` existed carry "jpeg_draft": false, and exact gives those
        # very scores (bit-identical frames): their fingerprints stay valid, nothing is re-scored.
        options["jpeg_draft"] = False
    else:
        options["preprocess"] = cfg.preprocess
    return {**options, "band_edges": [float(e) for e in cfg.band_edges]}


def _fingerprint_prefix(cfg: ScoreConfig) -> str:
    return json.dumps(fingerprint_options(cfg), sort_keys=True, separators=(",", ":")) + "|"


def score_fingerprint(cfg: ScoreConfig, device: str, precision: str) -> str:
    """A short, stable hash of the options and the resolved runtime; equal strings mean a score can be reused."""
    text = f"{_fingerprint_prefix(cfg)}{device}|{precision}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def fingerprint_column(cfg: ScoreConfig, device: Column, precision: Column) -> Column:
    """``score_fingerprint`` per row, from what ran on its executor (the same hash as ``score_fingerprint``)."""
    text = F.concat(F.lit(_fingerprint_prefix(cfg)), device, F.lit("|"), precision)
    return F.substring(F.sha2(text, 256), 1, 16)


def expected_runtime(spark: SparkSession, cfg: ScoreConfig) -> tuple[str, str]:
    """The (device class, precision) this run's executors will most likely resolve, guessed on the driver.

    ``device=auto`` means a GPU when the cluster schedules GPUs for tasks or executors, or, in local
    mode, when this machine has one. Only used to skip rows already scored; see the module note.
    """
    device = cfg.device
    if device == "auto":
        gpu_conf = [spark.conf.get(key, None) or "0" for key in (
            "spark.task.resource.gpu.amount", "spark.executor.resource.gpu.amount")]
        scheduled = any(_positive(v) for v in gpu_conf)
        master = (spark.conf.get("spark.master", None) or "")
        local_gpu = master.startswith("local") and _local_cuda()
        device = "cuda" if scheduled or local_gpu else "cpu"
    precision = cfg.precision if cfg.precision != "auto" else ("fp16" if device == "cuda" else "fp32")
    return device, precision


def _positive(value: str) -> bool:
    try:
        return float(value) > 0
    except ValueError:
        return False


def _local_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def input_hash(cfg: ScoreConfig) -> Column:
    """SHA-256 over the image (bytes or reference string) and the caption; nulls hash distinctly."""
    def part(name: str) -> Column:
        return F.coalesce(F.sha2(col(name).cast("binary"), 256), F.lit("null"))

    return F.sha2(F.concat_ws("|", part(cfg.image_col), part(cfg.caption_col)), 256)


def with_provenance_columns(df: DataFrame, cfg: ScoreConfig, scored_at) -> DataFrame:
    """``df`` (from ``add_scores(..., runtime=True)``) plus the per-row provenance columns.

    ``scored_at`` is one timestamp for the whole run; ``score_device``/``score_precision`` are already
    in ``df``, as the UDF resolved them.
    """
    return df.withColumns(
        {
            "score_model": F.lit(cfg.model),
            "score_model_revision": F.lit(cfg.model_revision).cast("string"),
            "score_fingerprint": fingerprint_column(cfg, F.col("score_device"), F.col("score_precision")),
            "scored_at": F.lit(scored_at).cast("timestamp"),
        }
    )


def provenance_properties(cfg: ScoreConfig, runtimes: list[tuple[str, str]]) -> dict[str, str]:
    """The ``clipscore.*`` table properties for a run with ``cfg`` that ran as ``runtimes`` (device, precision)."""
    runtimes = sorted(set(runtimes))
    return {
        "clipscore.version": __version__,
        "clipscore.model": cfg.model,
        "clipscore.model_revision": cfg.model_revision or "",
        "clipscore.models": json.dumps([{"name": m.name, "model": m.model, "revision": m.revision}
                                        for m in cfg.models]),
        "clipscore.band_column": cfg.band_column,
        "clipscore.embeddings": ((cfg.embedding_dtype if cfg.embedding_format == "binary" else "array")
                                 if cfg.write_embeddings else ""),
        "clipscore.device": ",".join(sorted({d for d, _ in runtimes})),
        "clipscore.precision": ",".join(sorted({p for _, p in runtimes})),
        "clipscore.band_edges": json.dumps([float(e) for e in cfg.band_edges]),
        "clipscore.score_fingerprint": ",".join(score_fingerprint(cfg, d, p) for d, p in runtimes),
        "clipscore.score_options": json.dumps(fingerprint_options(cfg), sort_keys=True),
    }


SIDECAR = "_clipscore_provenance.json"  # beside a Parquet output, which has no table properties


def table_provenance(spark: SparkSession, target: str) -> dict[str, str]:
    """The ``clipscore.*`` properties of a Delta table, or the sidecar of a Parquet path (empty when none)."""
    sidecar = _sidecar(target)
    if sidecar is not None and os.path.isfile(sidecar):
        with open(sidecar, encoding="utf-8") as handle:
            return {k: v for k, v in json.load(handle).items() if k.startswith(PROPERTY_PREFIX)}
    try:
        rows = spark.sql(f"SHOW TBLPROPERTIES {delta_identifier(target)}").collect()
    except Exception:  # noqa: BLE001 - not a Delta table (plain Parquet without a sidecar): no provenance
        return {}
    return {r["key"]: r["value"] for r in rows if r["key"].startswith(PROPERTY_PREFIX)}


def _sidecar(target: str) -> str | None:
    """The sidecar's path for a local or FUSE path target (None for catalog names and remote URLs)."""
    if is_table_name(target) or "://" in target or target.startswith("dbfs:"):
        return None
    return os.path.join(target, SIDECAR)


def record_parquet_provenance(target: str, cfg: ScoreConfig, runtimes: list[tuple[str, str]]) -> bool:
    """The same properties as a Delta table's, as JSON beside a Parquet output (searchable without --model)."""
    sidecar = _sidecar(target)
    if sidecar is None:
        log.warning("provenance is not recorded for a Parquet output at %s (no table properties, no local "
                    "folder for a sidecar); use Delta, or pass --model to search and report", target)
        return False
    with open(sidecar, "w", encoding="utf-8") as handle:
        json.dump(provenance_properties(cfg, runtimes or [NOTHING_RAN]), handle, indent=1, sort_keys=True)
    return True


def record_provenance(spark: SparkSession, target: str, cfg: ScoreConfig, runtimes: list[tuple[str, str]]) -> None:
    """Set the ``clipscore.*`` properties on a Delta table; no commit when they are already current."""
    if not runtimes:  # an empty input: no executor resolved anything
        runtimes = [NOTHING_RAN]
    wanted = provenance_properties(cfg, runtimes)
    if table_provenance(spark, target) == wanted:
        return
    set_table_properties(spark, target, wanted)
    log.info("recorded provenance on %s: model=%s device=%s precision=%s", target, cfg.model,
             wanted["clipscore.device"], wanted["clipscore.precision"])


def set_table_properties(spark: SparkSession, target: str, properties: dict[str, str]) -> None:
    """``ALTER TABLE ... SET TBLPROPERTIES`` on a Delta path or catalog table (one commit)."""
    assignments = ", ".join(f"{_sql_string(k)} = {_sql_string(v)}" for k, v in properties.items())
    spark.sql(f"ALTER TABLE {delta_identifier(target)} SET TBLPROPERTIES ({assignments})")


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
