# Databricks notebook source
# MAGIC %md
# MAGIC # Explore scores
# MAGIC Rows per score band, the lowest-scoring pairs with their images and captions, and the full curation
# MAGIC report (distribution, per-category plots, grids, the similarity matrix of a sample, likely mislabels).

# COMMAND ----------

dbutils.widgets.text("table", "", "Scored table (catalog.schema.table or path)")
dbutils.widgets.text("image_col", "image", "Image column")
dbutils.widgets.text("caption_col", "caption", "Caption column")
dbutils.widgets.text("lowest", "20", "How many lowest-scoring pairs to show")
dbutils.widgets.text("image_base_path", "", "Folder that relative image paths are relative to")
dbutils.widgets.text("category_col", "", "Category column for the report (optional)")

# COMMAND ----------

from clipscore.config.job import default_config_path, load_config
from clipscore.jobs.explore import lowest_scoring, rows_per_band
from clipscore.jobs.provenance import table_provenance
from clipscore.report.html import pairs_html

table = dbutils.widgets.get("table")
cfg = load_config(
    default_config_path(),
    overrides={name: dbutils.widgets.get(name) for name in ("image_col", "caption_col", "image_base_path")},
)

# COMMAND ----------

# MAGIC %md ## Provenance (Delta table properties)

# COMMAND ----------

table_provenance(spark, table)

# COMMAND ----------

# MAGIC %md ## Rows per band

# COMMAND ----------

display(rows_per_band(spark, table))

# COMMAND ----------

# MAGIC %md ## Lowest-scoring pairs

# COMMAND ----------

lowest = lowest_scoring(spark, cfg, table, int(dbutils.widgets.get("lowest")))
displayHTML(pairs_html(lowest, cfg.image_col, cfg.caption_col, size=160, base_path=cfg.image_base_path))

# COMMAND ----------

# MAGIC %md ## Curation report
# MAGIC Spark computes the aggregates; the sample is re-embedded with the model the table was scored with.

# COMMAND ----------

from clipscore.jobs.report import ReportOptions, run_report

report = run_report(spark, ReportOptions(
    input=table, output="/tmp/clipscore_report.html", image_col=cfg.image_col, caption_col=cfg.caption_col,
    image_base_path=cfg.image_base_path, category_col=dbutils.widgets.get("category_col") or None))
displayHTML(open(report["output"], encoding="utf-8").read())
