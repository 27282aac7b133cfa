# Databricks notebook source
# MAGIC %md
# MAGIC # Score a table with CLIP
# MAGIC Reads a table of image-caption pairs and writes it with `similarity`, `score_band` and `score_error`,
# MAGIC partitioned by band. Install the clipscore wheel on the cluster first (see docs/cluster.md).

# COMMAND ----------

dbutils.widgets.text("input", "", "Input (catalog.schema.table or path)")
dbutils.widgets.text("output", "", "Output (catalog.schema.table or path)")
dbutils.widgets.text("model", "openai/clip-vit-base-patch32", "Model (hub id or /Volumes/... folder)")
dbutils.widgets.text("image_col", "image", "Image column")
dbutils.widgets.text("caption_col", "caption", "Caption column")
dbutils.widgets.dropdown("mode", "error", ["error", "overwrite", "append"], "Write mode")
dbutils.widgets.dropdown("precision", "auto", ["auto", "fp32", "fp16", "bf16"], "Precision")

# COMMAND ----------

from clipscore.config.job import default_config_path, load_config
from clipscore.jobs.score import run_score

cfg = load_config(
    default_config_path(),
    overrides={name: dbutils.widgets.get(name) for name in
               ("input", "output", "model", "image_col", "caption_col", "mode", "precision")},
)
cfg

# COMMAND ----------

summary = run_score(spark, cfg)
displayHTML(f"<pre>{summary.format()}</pre>")
