"""Every allowed-value list of the options, once: the option objects, the CLI and the jobs check against these."""

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
PREPROCESS_MODES = ("exact", "fast")
BAND_COLUMNS = ("similarity", "probability")
EMBEDDING_DTYPES = ("float16", "float32")
INPUT_FORMATS = ("auto", "delta", "parquet", "csv", "table")
OUTPUT_FORMATS = ("delta", "parquet")
WRITE_MODES = ("overwrite", "append", "error")
# Opt-in groups of row facts computed in the scoring pass (``signals:``); docs/curation.md lists their columns.
SIGNAL_GROUPS = ("image", "caption", "language", "phash")
