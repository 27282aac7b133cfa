# Databricks notebook source
# MAGIC %md
# MAGIC # Search, near-duplicates and better captions
# MAGIC For a table scored with `write_embeddings` (`--set write_embeddings=true`): the rows nearest a text,
# MAGIC near-duplicate images marked with `duplicate_of`, and a better caption for low-scoring rows, all from the
# MAGIC stored embeddings (the image model does not run over the table again).

# COMMAND ----------

dbutils.widgets.text("table", "", "Scored table with embeddings (catalog.schema.table or path)")
dbutils.widgets.text("query", "a red circle", "Text to search images by")
dbutils.widgets.text("k", "20", "How many rows to return")
dbutils.widgets.text("threshold", "0.97", "Near-duplicate cosine threshold")
dbutils.widgets.text("below", "0.28", "Suggest captions for rows scoring below")
dbutils.widgets.text("output", "", "Write the deduplicated table here (optional)")

# COMMAND ----------

from clipscore.jobs.dedup import DedupOptions, run_dedup
from clipscore.jobs.search import SearchOptions, run_search
from clipscore.jobs.suggest import SuggestOptions, run_suggest

table = dbutils.widgets.get("table")

# COMMAND ----------

# MAGIC %md ## Text → images
# MAGIC The query is embedded once with the table's model (its provenance); each partition keeps its own top k.

# COMMAND ----------

found = run_search(spark, SearchOptions(input=table, text=dbutils.widgets.get("query"), k=int(dbutils.widgets.get("k"))))
display(found)

# COMMAND ----------

# MAGIC %md ## Near-duplicate images
# MAGIC `duplicate_of` is the key of the kept row (the best-captioned copy); `duplicate_of IS NULL` keeps one row per group.

# COMMAND ----------

dedup = run_dedup(spark, DedupOptions(input=table, threshold=float(dbutils.widgets.get("threshold")),
                                      output=dbutils.widgets.get("output") or None))
display(dedup["largest"])

# COMMAND ----------

# MAGIC %md ## Better captions for low-scoring rows

# COMMAND ----------

suggested = run_suggest(spark, SuggestOptions(input=table, below=float(dbutils.widgets.get("below"))))
display(suggested["best"])
