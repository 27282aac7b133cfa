# Databricks notebook source
# MAGIC %md
# MAGIC # MERGE scores into a lakehouse table
# MAGIC Scores the rows of `input` that the `target` Delta table does not already hold scored with this model
# MAGIC and options, and MERGEs `similarity`, `score_band`, `score_error` and provenance columns into `target`
# MAGIC by `keys`. Safe to rerun: a rerun skips what is done, and a killed run resumes from its last commit.

# COMMAND ----------

dbutils.widgets.text("input", "", "Input (catalog.schema.table or path)")
dbutils.widgets.text("target", "", "Target Delta table (catalog.schema.table or path)")
dbutils.widgets.text("keys", "id", "Key column(s), comma separated")
dbutils.widgets.text("model", "openai/clip-vit-base-patch32", "Model (hub id or /Volumes/... folder)")
dbutils.widgets.text("image_col", "image", "Image column")
dbutils.widgets.text("caption_col", "caption", "Caption column")
dbutils.widgets.text("merge_chunk_rows", "1000000", "Rows per MERGE commit")
dbutils.widgets.dropdown("rescore_all", "false", ["false", "true"], "Re-score rows already scored")

# COMMAND ----------

from clipscore.config.job import default_config_path, load_config
from clipscore.jobs.merge import run_merge
from clipscore.jobs.provenance import delta_identifier

target = dbutils.widgets.get("target")
cfg = load_config(
    default_config_path(),
    overrides={
        "input": dbutils.widgets.get("input"),
        "output": target,
        "merge_keys": dbutils.widgets.get("keys"),
        "model": dbutils.widgets.get("model"),
        "image_col": dbutils.widgets.get("image_col"),
        "caption_col": dbutils.widgets.get("caption_col"),
        "merge_chunk_rows": dbutils.widgets.get("merge_chunk_rows"),
        "skip_scored": dbutils.widgets.get("rescore_all") != "true",
    },
)

# COMMAND ----------

summary = run_merge(spark, cfg)
displayHTML(f"<pre>{summary.format()}</pre>")

# COMMAND ----------

display(spark.sql(f"DESCRIBE HISTORY {delta_identifier(target)}").select("version", "timestamp", "operation", "operationMetrics"))
