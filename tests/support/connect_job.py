"""Run by tests/spark/test_connect.py in its own process: the score and merge jobs over Spark Connect.

``SparkSession.builder.remote("local[2]")`` starts a local Spark Connect server (the connect jar
ships with pyspark 4) with Delta configured, and gives a Connect client session: it has no
SparkContext, so any ``sparkContext`` use in our job code would fail here. Prints one JSON line.
"""
from __future__ import annotations

import glob
import json
import os
import sys

from pyspark.sql import SparkSession


def stale_staging(spark, work: str) -> tuple[list[str], bool]:
    """A killed run's staging folder (3 days old) on a non-local filesystem (viewfs:// mounted onto a local
    folder): Spark Connect can list it through a Spark read, but not delete it, so it can only warn."""
    import logging

    from aging import age_local
    from clipscore.jobs import staging

    under = os.path.join(work, "stale_root")  # mounted by main()'s session options
    os.makedirs(under)
    root = "viewfs://connectstale/stage"
    spark.range(5).write.parquet(root + "/run_1_dead")
    local = os.path.join(under, "run_1_dead")
    age_local(local, 3 * 24 * 3600)
    messages: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("clipscore")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        staging.remove_stale_runs(spark, root, "1d")
    finally:
        logger.removeHandler(handler)
    return [m for m in messages if "stale" in m], os.path.isdir(local)


def main() -> None:
    model_dir, work = sys.argv[1], sys.argv[2]
    from delta import configure_spark_with_delta_pip

    builder = (
        SparkSession.builder.remote("local[2]")
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.sql.warehouse.dir", os.path.join(work, "warehouse"))
        .config("spark.hadoop.fs.viewfs.mounttable.connectstale.link./stage",  # stale_staging()'s filesystem
                "file://" + os.path.join(work, "stale_root"))
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
    )
    spark = configure_spark_with_delta_pip(builder).getOrCreate()
    from clipscore.config.job import ScoreConfig
    from clipscore.jobs.merge import run_merge
    from clipscore.jobs.provenance import table_provenance
    from clipscore.jobs.score import run_score

    try:
        from PIL import Image
        import io

        def png(seed: int) -> bytes:
            buf = io.BytesIO()
            Image.new("RGB", (24, 24), (seed * 40 % 256, 90, 200)).save(buf, format="PNG")
            return buf.getvalue()

        source = os.path.join(work, "source")
        rows = [(i, png(i), f"connect pair {i}") for i in range(6)] + [(6, b"", "empty image")]
        spark.createDataFrame(rows, "id int, image binary, caption string").write.format("delta").save(source)
        spark.sql("CREATE TABLE spark_catalog.default.connect_target (id int, image binary, caption string) USING delta")

        cfg = ScoreConfig(model=model_dir, device="cpu", precision="fp32", batch_size=4, input=source,
                          output=os.path.join(work, "scored"))
        from clipscore.jobs.score import MAX_BYTES_KEY, MAX_RECORDS_KEY, add_scores

        spark.conf.set(MAX_RECORDS_KEY, "10000")  # Spark's default: gigabytes of image bytes per batch
        add_scores(spark.read.format("delta").load(source), cfg)  # lazy, but it bounds the session
        arrow_limits = [spark.conf.get(MAX_RECORDS_KEY), spark.conf.get(MAX_BYTES_KEY)]
        score = run_score(spark, cfg)
        scored = spark.read.format("delta").load(cfg.output)
        merge_cfg = cfg.replace(output="spark_catalog.default.connect_target", merge_keys=("id",))
        merged = run_merge(spark, merge_cfg)
        rerun = run_merge(spark, merge_cfg)
        # The stored-embedding jobs: their broadcasts fall back to the task closure without a SparkContext.
        from clipscore.jobs.dedup import DedupOptions, run_dedup
        from clipscore.jobs.search import SearchOptions, run_search
        from clipscore.jobs.suggest import SuggestOptions, run_suggest

        embedded = os.path.join(work, "embedded")
        run_score(spark, cfg.replace(output=embedded, write_embeddings=True))
        found = run_search(spark, SearchOptions(input=embedded, text="connect pair 3", k=3, device="cpu"))
        suggested = run_suggest(spark, SuggestOptions(input=embedded, below=2.0, margin=0.0))
        dedup = run_dedup(spark, DedupOptions(input=embedded, threshold=0.5))
        marked = spark.read.format("delta").load(embedded).count()
        stale_warnings, stale_left = stale_staging(spark, work)
        result = {
            "search_ranks": found.search_rank.tolist(),
            "suggest": [suggested["rows_below"], suggested["suggested"]],
            "dedup": [dedup["rows_compared"], marked],
            "session": type(spark).__module__,
            "arrow_limits": arrow_limits,
            "score_rows": score.rows,
            "score_scored": score.scored,
            "score_errors": score.errors_by_reason,
            "scored_rows": scored.count(),
            "scored_similarity": scored.filter("similarity IS NOT NULL").count(),
            "provenance_model": table_provenance(spark, cfg.output).get("clipscore.model"),
            "merge_rows": merged.rows,
            "rerun_skipped": rerun.skipped,
            "rerun_rows": rerun.rows,
            "target_rows": spark.read.table("spark_catalog.default.connect_target").count(),
            "score_files": [score.files_written, score.bytes_written],
            "scored_files": sorted(os.path.getsize(p) for p in glob.glob(os.path.join(cfg.output, "*", "*.parquet"))),
            "stale_warnings": stale_warnings,
            "stale_left": stale_left,
        }
    finally:
        spark.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
