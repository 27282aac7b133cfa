"""The command line's flags: one parser for every command, and the option objects built from parsed flags.

Shared by ``clipscore`` (``clipscore.jobs.cli``) and the spark-submit entry points (``jobs/score.py``,
``jobs/merge.py``, ``jobs/train.py`` through ``clipscore.jobs.entry``), so both take the same flags.
Allowed values come from ``clipscore.config.choices``.
"""
from __future__ import annotations

import argparse

from clipscore import __version__
from clipscore.config.choices import EMBEDDING_KINDS, INPUT_FORMATS, OUTPUT_FORMATS, WRITE_MODES
from clipscore.config.coerce import ConfigError
from clipscore.config.job import default_config_path, load_config, parse_set
from clipscore.config.options import ModelSpec


def _session_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--master", default=None, help="Spark master when no session exists (default local[*])")
    parser.add_argument("--log-level", default="INFO",
                        help="the clipscore log level (default INFO); DEBUG also shows Spark's, Ivy's and the model "
                             "libraries' own output")


def _write_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-format", dest="output_format",
                        help=f"{' | '.join(OUTPUT_FORMATS)} (default {OUTPUT_FORMATS[0]})")
    parser.add_argument("--mode", help=f"{' | '.join(WRITE_MODES)} (default error)")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="path (local, dbfs:/, s3a://...) or catalog table name")
    parser.add_argument("--input-format", dest="input_format",
                        help=f"{' | '.join(INPUT_FORMATS[1:])} (default: guessed from the input)")
    parser.add_argument("--model", action="append", default=None, metavar="[NAME=]MODEL",
                        help="Hugging Face id or local folder (CLIP, SigLIP, SigLIP2) or open_clip:ARCH/PRETRAINED "
                             "(default: openai/clip-vit-base-patch32). Repeat to score with several models in one "
                             "pass (NAME names its columns: similarity_NAME); the first is the primary")
    parser.add_argument("--image-col", dest="image_col", help="binary image bytes, or a path / http(s) URL string")
    parser.add_argument("--caption-col", dest="caption_col")
    parser.add_argument("--conf", default=None, help="YAML config (default: the packaged conf/default.yaml)")
    parser.add_argument("--set", dest="set_args", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config option, e.g. --set batch_size=32 --set precision=bf16")
    _session_flags(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipscore", description="Score image-caption pairs with CLIP on Spark, and curate with the scores and embeddings.")
    parser.add_argument("--version", action="version", version=f"clipscore {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    score = sub.add_parser("score", help="score a table and write it partitioned by score band")
    _common(score)
    score.add_argument("--output", required=True, help="path or catalog table name")
    _write_flags(score)

    merge = sub.add_parser("merge", help="score a source and MERGE the scores into an existing Delta table")
    _common(merge)
    merge.add_argument("--target", required=True, help="existing Delta table: path or catalog name")
    merge.add_argument("--keys", required=True, help="key column(s), comma separated, e.g. id or shard,id")
    merge.add_argument("--rescore-all", action="store_true",
                       help="score every source row, even those already scored with the same model and options")
    train = sub.add_parser("train", help="train or fine-tune CLIP on a table and save a model folder")
    train.add_argument("--input", required=True, help="table or path with image and caption columns (as for score)")
    train.add_argument("--output", required=True, help="the model folder to write (safetensors, processor, card)")
    train.add_argument("--init", help="CLIP folder or hub id to fine-tune, or a config folder (no weights) to train "
                                      "from scratch")
    for flag, kind in (("--epochs", int), ("--batch-size", int), ("--lr", float), ("--val-fraction", float),
                       ("--num-processes", int)):
        train.add_argument(flag, dest=flag[2:].replace("-", "_"), type=kind)
    train.add_argument("--input-format", dest="input_format")
    train.add_argument("--image-col", dest="image_col")
    train.add_argument("--caption-col", dest="caption_col")
    train.add_argument("--set", dest="set_args", action="append", default=[], metavar="KEY=VALUE",
                       help="any TrainOptions field, e.g. --set use_gpu=true --set local_mode=false")
    _session_flags(train)
    keep = sub.add_parser("filter", help="keep the pairs that pass SQL rules and/or a score cut (top fraction, per group)")
    keep.add_argument("--input", required=True, help="a scored table (path or catalog name)")
    keep.add_argument("--output", required=True, help="where the kept rows go (path or catalog name)")
    rule = keep.add_mutually_exclusive_group()
    rule.add_argument("--min-score", dest="min_score", type=float, help="keep rows scoring at least this")
    rule.add_argument("--top-fraction", dest="top_fraction", type=float,
                      help="keep this fraction of the scored rows (of those passing --where/--preset)")
    keep.add_argument("--where", help="a Spark SQL predicate over any columns, e.g. \"caption_language = 'en'\"")
    keep.add_argument("--preset", help="a named baseline: datacomp-basic (English, > 2 words, > 5 chars, "
                                       "shorter side >= 200, aspect <= 3, then the top 30 %%)")
    keep.add_argument("--per", help="with --top-fraction: one cut per value of this column")
    keep.add_argument("--score-col", dest="score_col", help="the score to cut (default similarity)")
    keep.add_argument("--keep-column", dest="keep_column", action="store_true",
                      help="write every row with a boolean `keep` column instead of only the kept rows")
    keep.add_argument("--accuracy", type=int, help="percentile_approx accuracy (default 10000: rank error <= rows/10000)")
    keep.add_argument("--input-format", dest="input_format")
    _write_flags(keep)
    _session_flags(keep)
    report = sub.add_parser("report", help="a self-contained HTML report of a scored table")
    report.add_argument("--input", required=True, help="a scored table (path or catalog name)")
    report.add_argument("--output", default="report.html", help="the HTML file to write (default report.html)")
    report.add_argument("--category-col", dest="category_col", help="a column to split the distributions by")
    report.add_argument("--sample", type=int, help="rows re-embedded for the matrix and mislabels (default 48)")
    report.add_argument("--figures", help="also write the figures as PNG files into this folder")
    report.add_argument("--threshold", dest="thresholds", type=float, action="append",
                        help="mark a threshold on the histogram (repeatable); the first centres the borderline grid")
    for flag in ("--score-col", "--image-col", "--caption-col", "--image-base-path", "--model", "--input-format"):
        report.add_argument(flag, dest=flag[2:].replace("-", "_"))
    report.add_argument("--seed", type=int)
    report.add_argument("--where", dest="where", action="append",
                        help="a rule (Spark SQL predicate) whose drops the report counts; repeatable")
    report.add_argument("--preset", help="count the drops of a preset's rules (default: datacomp-basic when the "
                                         "table has its signal columns)")
    report.add_argument("--candidates", type=int,
                        help="with stored embeddings: the table's distinct captions the sample is matched against (10000)")
    report.add_argument("--margin", type=float, help="how much another caption must win by to flag a row (0.02)")
    _session_flags(report)
    _search_parser(sub)
    _suggest_parser(sub)
    _dedup_parser(sub)
    _probe_parser(sub)
    _export_parser(sub)
    _clean_parser(sub)
    return parser


def _export_parser(sub) -> None:
    export = sub.add_parser("export", help="write a table's rows as WebDataset shards (or one Parquet dataset)")
    export.add_argument("--input", required=True, help="a table (typically clipscore filter's output)")
    export.add_argument("--output", required=True, help="the folder for the shards")
    export.add_argument("--format", choices=("webdataset", "parquet"), help="webdataset (default) or parquet")
    export.add_argument("--shard-rows", dest="shard_rows", type=int, help="samples per shard at most (10000)")
    export.add_argument("--shard-bytes", dest="shard_bytes", type=int, help="bytes per shard at most (1 GiB)")
    export.add_argument("--key", help="the unique, tar-safe key column (default: key, else id)")
    for flag in ("--image-col", "--caption-col", "--image-base-path"):
        export.add_argument(flag, dest=flag[2:].replace("-", "_"))
    export.add_argument("--include-embeddings", dest="include_embeddings", action="store_true", default=None,
                        help="also put the embedding columns in each sample's .json")
    export.add_argument("--mode", choices=("error", "overwrite"), help="error (default) or overwrite")
    _job_flags(export)


def _clean_parser(sub) -> None:
    clean = sub.add_parser("clean", help="remove the staging folders killed runs left (older than an age)")
    clean.add_argument("--staging", required=True,
                       help="a merge's staging root (the merge logs it), or the folder holding Parquet outputs")
    clean.add_argument("--older-than", dest="older_than", default="1d",
                       help="remove folders unchanged for longer than this: 30m, 12h, 1d (default), 2d")
    clean.add_argument("--dry-run", dest="dry_run", action="store_true", help="list only; delete nothing")
    _session_flags(clean)


def _probe_parser(sub) -> None:
    probe = sub.add_parser("probe", help="train a linear head on the stored image embeddings from a label column")
    probe.add_argument("--input", required=True, help="a table scored with --set write_embeddings=true, with labels")
    probe.add_argument("--label-col", dest="label_col", required=True, help="0/1, true/false or a boolean column")
    probe.add_argument("--output", required=True, help="the head file to write (.safetensors)")
    probe.add_argument("--model-name", dest="model_name", help="whose embeddings, when several models wrote some")
    probe.add_argument("--val-fraction", dest="val_fraction", type=float, help="rows held out for the ROC AUC (0.2)")
    probe.add_argument("--reg-param", dest="reg_param", type=float, help="L2 strength (MLlib regParam, 0.001)")
    probe.add_argument("--max-iter", dest="max_iter", type=int)
    probe.add_argument("--seed", type=int)
    _job_flags(probe)


def _job_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input-format", dest="input_format")
    _session_flags(parser)


def _search_parser(sub) -> None:
    search = sub.add_parser("search", help="the rows nearest a text or an image, by the table's stored embeddings")
    search.add_argument("--input", required=True, help="a table scored with --set write_embeddings=true")
    query = search.add_mutually_exclusive_group(required=True)
    query.add_argument("--text", help="a text query (searches images by default)")
    query.add_argument("--image", help="an image path or http(s) URL (searches captions by default)")
    search.add_argument("--k", type=int, help="how many rows (default 20)")
    search.add_argument("--against", choices=EMBEDDING_KINDS,
                        help="search the image or the caption embeddings (default: the other kind than the query)")
    search.add_argument("--columns", help="comma-separated columns to return (default: all but binary ones)")
    search.add_argument("--output", help="write the rows here (Delta or Parquet) instead of printing them")
    _write_flags(search)
    search.add_argument("--model", help="embed the query with this model (default: the table's, from its provenance)")
    search.add_argument("--model-name", dest="model_name", help="whose embeddings, when several models wrote some")
    search.add_argument("--image-base-path", dest="image_base_path", help="resolves a relative --image path")
    search.add_argument("--device", help="where the query is embedded (default auto)")
    search.add_argument("--allow-private-urls", dest="allow_private_urls", action="store_true", default=None,
                        help="let an --image URL point at a private or loopback address")
    _job_flags(search)


def _suggest_parser(sub) -> None:
    suggest = sub.add_parser("suggest", help="a better caption for low-scoring rows, from the table's own captions")
    suggest.add_argument("--input", required=True, help="a table scored with --set write_embeddings=true")
    suggest.add_argument("--below", required=True, type=float, help="rows scoring below this get a suggestion")
    suggest.add_argument("--margin", type=float, help="how much the suggestion must beat the row's score by (0.02)")
    suggest.add_argument("--candidates", type=int, help="distinct captions searched (default 200000; a seeded sample "
                                                        "beyond)")
    suggest.add_argument("--output", help="write the table with suggested_caption/suggested_similarity here")
    _write_flags(suggest)
    for flag in ("--score-col", "--caption-col", "--image-col", "--model-name"):
        suggest.add_argument(flag, dest=flag[2:].replace("-", "_"))
    suggest.add_argument("--show", type=int, help="suggestions printed (default 20)")
    suggest.add_argument("--seed", type=int)
    _job_flags(suggest)


def _dedup_parser(sub) -> None:
    dedup = sub.add_parser("dedup", help="mark near-duplicate images (duplicate_of, duplicate_group_size)")
    dedup.add_argument("--input", required=True, help="a table scored with --set write_embeddings=true")
    dedup.add_argument("--threshold", required=True, type=float,
                       help="cosine at or above which two embeddings are duplicates (e.g. 0.95)")
    dedup.add_argument("--output", help="write the table with the dedup columns here (default: only print)")
    _write_flags(dedup)
    dedup.add_argument("--key", help="a unique row key (default: id, else a path/URL image column)")
    dedup.add_argument("--kind", choices=EMBEDDING_KINDS, help="compare image (default) or caption embeddings")
    for flag in ("--clusters", "--cluster-rows", "--sample", "--max-cluster-rows", "--show", "--seed"):
        dedup.add_argument(flag, dest=flag[2:].replace("-", "_"), type=int)
    for flag in ("--score-col", "--image-col", "--caption-col", "--model-name"):
        dedup.add_argument(flag, dest=flag[2:].replace("-", "_"))
    _job_flags(dedup)


def options_from_args(cls, args: argparse.Namespace, names: tuple[str, ...], **fixed):
    """An option object from the flags that were given (the others keep the dataclass defaults)."""
    return cls(**{k: getattr(args, k) for k in names if getattr(args, k) is not None}, **fixed)


def train_options_from_args(args: argparse.Namespace):
    from clipscore.training.options import TrainOptions

    values = {k: getattr(args, k) for k in ("input", "output", "init", "epochs", "batch_size", "lr", "val_fraction",
                                            "num_processes", "input_format", "image_col", "caption_col")
              if getattr(args, k) is not None}
    for item in args.set_args:
        key, value = parse_set(item)
        known = {f for f in TrainOptions.__dataclass_fields__}
        if key not in known:
            raise ConfigError(f"Unknown train option '{key}'. Known: {', '.join(sorted(known))}.")
        values[key] = value
    return TrainOptions(**values)


def config_from_args(args: argparse.Namespace):
    flags = {k: getattr(args, k, None) for k in (
        "input", "output", "input_format", "output_format", "mode", "image_col", "caption_col")}
    if args.model:
        one = len(args.model) == 1 and ModelSpec.coerce(args.model[0]).model == args.model[0].strip()
        flags["model" if one else "models"] = args.model[0] if one else list(args.model)
    if args.command == "merge":
        flags["output"] = args.target
        flags["merge_keys"] = [k.strip() for k in args.keys.split(",") if k.strip()]
        if args.rescore_all:
            flags["skip_scored"] = False
    return load_config(args.conf or default_config_path(), overrides=flags, set_args=args.set_args)
