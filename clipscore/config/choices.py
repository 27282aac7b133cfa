"""Every allowed-value list of the options, once: the option objects, the CLI and the jobs check against these."""

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
PREPROCESS_MODES = ("exact", "fast")
BAND_COLUMNS = ("similarity", "probability")
EMBEDDING_DTYPES = ("float16", "float32")
# array: array<float> columns (Vector Search, Spark ML, pandas, DuckDB read them); binary16/binary32: compact
# little-endian cells (binary = binary with embedding_dtype).
EMBEDDING_FORMATS = ("array", "binary", "binary16", "binary32")
INPUT_FORMATS = ("auto", "delta", "parquet", "csv", "table", "webdataset")
OUTPUT_FORMATS = ("delta", "parquet")
WRITE_MODES = ("overwrite", "append", "error")
# Opt-in groups of row facts computed in the scoring pass (``signals:``); docs/curation.md lists their columns.
SIGNAL_GROUPS = ("image", "caption", "language", "phash")
EMBEDDING_KINDS = ("image", "text")  # search --against, dedup --kind: which stored embeddings
