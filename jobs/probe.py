"""The probe job: a linear head on a table's stored image embeddings, from a few thousand labelled rows.

    clipscore probe --input SCORED --label-col watermark --output watermark.safetensors [--model-name b32]

Teams label rows for watermarks, NSFW or a style; LAION published such heads only for OpenAI B/32 and
L/14. This trains one for any model family: Spark MLlib's ``LogisticRegression`` on the primary
model's stored unit image embeddings (``array<float>`` or binary cells) of the rows whose label is
0/1 (or true/false), with a seeded validation split; the validation ROC AUC (MLlib's
``BinaryClassificationEvaluator``) is printed and recorded in the head's metadata. The head file is
a one-layer head in the layout ``heads:`` loads (``clipscore.signals.heads``): ``head_<name> =
sigmoid(w · embedding + b)``, the probability of label 1.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from clipscore.config.choices import INPUT_FORMATS
from clipscore.config.coerce import ConfigError, Options, choice, coerce_fields
from clipscore.jobs.embeddings import open_embeddings
from clipscore.jobs.names import col
from clipscore.retrieval.vectors import decode_matrix
from clipscore.signals.heads import save_head

log = logging.getLogger("clipscore")


@dataclass(frozen=True)
class ProbeOptions(Options):
    input: str | None = None
    output: str | None = None  # the head file (.safetensors)
    label_col: str = "label"
    model_name: str | None = None  # whose embeddings (several models in one table)
    input_format: str = "auto"
    val_fraction: float = 0.2
    reg_param: float = 1e-3  # L2 strength (MLlib's regParam)
    max_iter: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        coerce_fields(self)
        choice(self, "input_format", INPUT_FORMATS)
        if not self.input or not self.output:
            raise ConfigError("clipscore probe needs --input (a table with stored embeddings and a label column) "
                              "and --output (the head file, .safetensors).")
        if not self.output.endswith(".safetensors"):
            raise ConfigError(f"--output {self.output}: a head is written as .safetensors (heads: loads it).")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"--val-fraction must be between 0 and 1; got {self.val_fraction}.")
        if not (self.reg_param >= 0 and math.isfinite(self.reg_param)) or self.max_iter < 1:
            raise ConfigError("reg_param must be a finite number >= 0 and max_iter at least 1.")


def _labels(df: DataFrame, label_col: str, source: str) -> DataFrame:
    """Rows with a usable label as a double 0/1 column ``_label`` (others dropped); refuse other label types."""
    if label_col not in df.columns:
        raise ConfigError(f"Label column '{label_col}' is not in {source}; columns: {', '.join(df.columns)}.")
    kind = df.schema[label_col].dataType
    if isinstance(kind, T.BooleanType):
        label = col(label_col).cast("double")
    elif isinstance(kind, T.NumericType):
        label = F.when(col(label_col).isin(0, 1), col(label_col).cast("double"))
    elif isinstance(kind, T.StringType):
        text = F.lower(F.trim(col(label_col)))
        label = F.when(text.isin("1", "true", "yes"), 1.0).when(text.isin("0", "false", "no"), 0.0)
    else:
        raise ConfigError(f"Label column '{label_col}' is {kind.simpleString()}; use 0/1, true/false or a boolean.")
    return df.withColumn("_label", label).filter(F.col("_label").isNotNull())


def run_probe(spark: SparkSession, options: ProbeOptions) -> dict[str, Any]:
    """Train, validate, write the head file; returns what it recorded."""
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.functions import array_to_vector

    stored = open_embeddings(spark, options.input, options.input_format, options.model_name)
    labelled = _labels(stored.df.filter(col(stored.image_col).isNotNull()), options.label_col, options.input)
    vectors = _as_arrays(labelled, stored.image_col, stored.dtype)
    data = vectors.select(array_to_vector(F.col("_vector")).alias("features"), F.col("_vector"),
                          F.col("_label").alias("label")).cache()
    counts = {int(r["label"]): int(r["count"]) for r in data.groupBy("label").count().collect()}
    if min(counts.get(0, 0), counts.get(1, 0)) < 5:
        raise ConfigError(f"{options.input}: '{options.label_col}' has {counts.get(1, 0)} positive and {counts.get(0, 0)} "
                          "negative rows with an embedding; label at least 5 of each (a few hundred for a useful head).")
    train, val = data.randomSplit([1 - options.val_fraction, options.val_fraction], seed=options.seed)
    model = LogisticRegression(regParam=options.reg_param, maxIter=options.max_iter, standardization=False).fit(train)
    weights, bias = model.coefficients.toArray(), float(model.intercept)
    # The head's own logit, written as SQL over the vector (model.transform would ship the model with its
    # training summary, which Spark 4.0.1 cannot serialise); MLlib's evaluator ranks it.
    logit = F.aggregate(F.zip_with(F.col("_vector"), F.array(*[F.lit(float(w)) for w in weights]), lambda x, w: x * w),
                        F.lit(0.0).cast("double"), lambda acc, v: acc + v) + F.lit(bias)
    auc = BinaryClassificationEvaluator(metricName="areaUnderROC", rawPredictionCol="logit").evaluate(
        val.select(logit.alias("logit"), F.col("label")))
    n_train, n_val = train.count(), val.count()
    data.unpersist()
    record = {"label_col": options.label_col, "source": options.input, "model": stored.model or "",
              "embedding_column": stored.image_col, "embedding_dim": str(stored.dim), "val_auc": f"{auc:.6f}",
              "train_rows": str(n_train), "val_rows": str(n_val), "positives": str(counts.get(1, 0)),
              "negatives": str(counts.get(0, 0)), "reg_param": str(options.reg_param)}
    save_head(options.output, weights, bias,
              {f"clipscore.probe.{k}": v for k, v in record.items()})
    log.info("probe '%s' on %s (%s-d, %s): validation ROC AUC %.4f on %s rows (%s train); head written to %s\n"
             "use it with: --set 'heads={%s: %s}'", options.label_col, options.input, stored.dim, stored.image_col,
             auc, f"{n_val:,}", f"{n_train:,}", options.output, options.label_col, options.output)
    return {**record, "val_auc": auc, "output": options.output}


def _as_arrays(df: DataFrame, column: str, dtype: str) -> DataFrame:
    """The embedding column as ``array<float>`` (``_vector``): as is, or decoded from binary cells."""
    if isinstance(df.schema[column].dataType, T.ArrayType):
        return df.withColumn("_vector", col(column).cast("array<float>"))
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("array<float>")
    def decode(cells):
        import pandas as pd

        matrix, _ = decode_matrix(cells.tolist(), dtype)
        return pd.Series(list(matrix))

    return df.withColumn("_vector", decode(col(column)))

