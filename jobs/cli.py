"""Command line: ``clipscore score|merge|train|filter|report|search|dedup|suggest`` (``spark-submit jobs/score.py``).

``main()`` only parses arguments, builds the config, gets a session (and stops it only if it made
it) and maps configuration errors to exit code 2 with the message that says what to change.
"""
from __future__ import annotations

import argparse
import logging
import sys

from clipscore import __version__
from clipscore.config.coerce import ConfigError
from clipscore.config.options import ModelSpec
from clipscore.config.job import default_config_path, load_config

log = logging.getLogger("clipscore")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="path (local, dbfs:/, s3a://...) or catalog table name")
    parser.add_argument("--input-format", dest="input_format",
                        help="delta | parquet | csv | table (default: guessed from the input)")
    parser.add_argument("--model", action="append", default=None, metavar="[NAME=]MODEL",
                        help="Hugging Face id or local folder (CLIP, SigLIP, SigLIP2) or open_clip:ARCH/PRETRAINED "
                             "(default: openai/clip-vit-base-patch32). Repeat to score with several models in one "
                             "pass (NAME names its columns: similarity_NAME); the first is the primary")
    parser.add_argument("--image-col", dest="image_col", help="binary image bytes, or a path / http(s) URL string")
    parser.add_argument("--caption-col", dest="caption_col")
    parser.add_argument("--conf", default=None, help="YAML config (default: the packaged conf/default.yaml)")
    parser.add_argument("--set", dest="set_args", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config option, e.g. --set batch_size=32 --set precision=bf16")
    parser.add_argument("--master", default=None, help="Spark master when no session exists (default local[*])")
    parser.add_argument("--log-level", default="INFO")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipscore", description="Score image-caption pairs with CLIP on Spark, and curate with the scores and embeddings.")
    parser.add_argument("--version", action="version", version=f"clipscore {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    score = sub.add_parser("score", help="score a table and write it partitioned by score band")
    _common(score)
    score.add_argument("--output", required=True, help="path or catalog table name")
    score.add_argument("--output-format", dest="output_format", help="delta | parquet (default delta)")
    score.add_argument("--mode", help="overwrite | append | error (default error)")

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
    train.add_argument("--master", default=None, help="Spark master when no session exists (default local[*])")
    train.add_argument("--log-level", default="INFO")
    keep = sub.add_parser("filter", help="keep the pairs above a score, or the top fraction (per group)")
    keep.add_argument("--input", required=True, help="a scored table (path or catalog name)")
    keep.add_argument("--output", required=True, help="where the kept rows go (path or catalog name)")
    rule = keep.add_mutually_exclusive_group(required=True)
    rule.add_argument("--min-score", dest="min_score", type=float, help="keep rows scoring at least this")
    rule.add_argument("--top-fraction", dest="top_fraction", type=float, help="keep this fraction of the scored rows")
    keep.add_argument("--per", help="with --top-fraction: one cut per value of this column")
    keep.add_argument("--score-col", dest="score_col", help="the score to cut (default similarity)")
    keep.add_argument("--keep-column", dest="keep_column", action="store_true",
                      help="write every row with a boolean `keep` column instead of only the kept rows")
    keep.add_argument("--accuracy", type=int, help="percentile_approx accuracy (default 10000: rank error <= rows/10000)")
    keep.add_argument("--input-format", dest="input_format")
    keep.add_argument("--output-format", dest="output_format")
    keep.add_argument("--mode", help="overwrite | append | error (default error)")
    keep.add_argument("--master", default=None, help="Spark master when no session exists (default local[*])")
    keep.add_argument("--log-level", default="INFO")
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
    report.add_argument("--candidates", type=int,
                        help="with stored embeddings: the table's distinct captions the sample is matched against (10000)")
    report.add_argument("--margin", type=float, help="how much another caption must win by to flag a row (0.02)")
    report.add_argument("--master", default=None, help="Spark master when no session exists (default local[*])")
    report.add_argument("--log-level", default="INFO")
    _search_parser(sub)
    _suggest_parser(sub)
    _dedup_parser(sub)
    return parser


def _job_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input-format", dest="input_format")
    parser.add_argument("--master", default=None, help="Spark master when no session exists (default local[*])")
    parser.add_argument("--log-level", default="INFO")


def _search_parser(sub) -> None:
    search = sub.add_parser("search", help="the rows nearest a text or an image, by the table's stored embeddings")
    search.add_argument("--input", required=True, help="a table scored with --set write_embeddings=true")
    query = search.add_mutually_exclusive_group(required=True)
    query.add_argument("--text", help="a text query (searches images by default)")
    query.add_argument("--image", help="an image path or http(s) URL (searches captions by default)")
    search.add_argument("--k", type=int, help="how many rows (default 20)")
    search.add_argument("--against", choices=("image", "text"),
                        help="search the image or the caption embeddings (default: the other kind than the query)")
    search.add_argument("--columns", help="comma-separated columns to return (default: all but binary ones)")
    search.add_argument("--output", help="write the rows here (Delta or Parquet) instead of printing them")
    search.add_argument("--output-format", dest="output_format")
    search.add_argument("--mode", help="overwrite | append | error (default error)")
    search.add_argument("--model", help="embed the query with this model (default: the table's, from its provenance)")
    search.add_argument("--model-name", dest="model_name", help="whose embeddings, when several models wrote some")
    search.add_argument("--image-base-path", dest="image_base_path", help="resolves a relative --image path")
    search.add_argument("--device", help="where the query is embedded (default auto)")
    search.add_argument("--allow-private-urls", dest="allow_private_urls", action="store_true", default=None,
                        help="let an --image URL point at a private or loopback address")
    _job_flags(search)


def _options(cls, args: argparse.Namespace, names: tuple[str, ...], **fixed):
    """An option object from the flags that were given (the others keep the dataclass defaults)."""
    return cls(**{k: getattr(args, k) for k in names if getattr(args, k) is not None}, **fixed)


def _run(app: str, args: argparse.Namespace, job, options):
    """Run ``job(spark, options)`` in the active session, or one made (and stopped) for it."""
    from clipscore.jobs.session import job_session

    with job_session(app, args.master) as spark:
        return job(spark, options)


def _suggest_parser(sub) -> None:
    suggest = sub.add_parser("suggest", help="a better caption for low-scoring rows, from the table's own captions")
    suggest.add_argument("--input", required=True, help="a table scored with --set write_embeddings=true")
    suggest.add_argument("--below", required=True, type=float, help="rows scoring below this get a suggestion")
    suggest.add_argument("--margin", type=float, help="how much the suggestion must beat the row's score by (0.02)")
    suggest.add_argument("--candidates", type=int, help="distinct captions searched (default 200000; a seeded sample "
                                                        "beyond)")
    suggest.add_argument("--output", help="write the table with suggested_caption/suggested_similarity here")
    suggest.add_argument("--output-format", dest="output_format")
    suggest.add_argument("--mode", help="overwrite | append | error (default error)")
    for flag in ("--score-col", "--caption-col", "--image-col", "--model-name"):
        suggest.add_argument(flag, dest=flag[2:].replace("-", "_"))
    suggest.add_argument("--show", type=int, help="suggestions printed (default 20)")
    suggest.add_argument("--seed", type=int)
    _job_flags(suggest)


def _suggest(args: argparse.Namespace) -> int:
    from clipscore.jobs.search import format_table
    from clipscore.jobs.suggest import SuggestOptions, run_suggest

    options = _options(SuggestOptions, args, ("input", "below", "margin", "candidates", "output", "output_format",
                                              "mode", "score_col", "caption_col", "image_col", "model_name", "show",
                                              "seed", "input_format"))
    summary = _run("clipscore-suggest", args, run_suggest, options)
    print(f"{summary['suggested']:,} of {summary['rows_below']:,} rows below {options.below:g} have a better caption "
          f"among {summary['candidates']:,} candidates ({summary['distinct_captions']:,} distinct captions)")
    if len(summary["best"]):
        print(format_table(summary["best"]))
    return 0


def _dedup_parser(sub) -> None:
    dedup = sub.add_parser("dedup", help="mark near-duplicate images (duplicate_of, duplicate_group_size)")
    dedup.add_argument("--input", required=True, help="a table scored with --set write_embeddings=true")
    dedup.add_argument("--threshold", required=True, type=float,
                       help="cosine at or above which two embeddings are duplicates (e.g. 0.95)")
    dedup.add_argument("--output", help="write the table with the dedup columns here (default: only print)")
    dedup.add_argument("--output-format", dest="output_format")
    dedup.add_argument("--mode", help="overwrite | append | error (default error)")
    dedup.add_argument("--key", help="a unique row key (default: id, else a path/URL image column)")
    dedup.add_argument("--kind", choices=("image", "text"), help="compare image (default) or caption embeddings")
    for flag in ("--clusters", "--cluster-rows", "--sample", "--max-cluster-rows", "--show", "--seed"):
        dedup.add_argument(flag, dest=flag[2:].replace("-", "_"), type=int)
    for flag in ("--score-col", "--image-col", "--caption-col", "--model-name"):
        dedup.add_argument(flag, dest=flag[2:].replace("-", "_"))
    _job_flags(dedup)


def _dedup(args: argparse.Namespace) -> int:
    from clipscore.jobs.dedup import DedupOptions, run_dedup
    from clipscore.jobs.search import format_table

    options = _options(DedupOptions, args, ("input", "threshold", "output", "output_format", "mode", "key", "kind",
                                            "clusters", "cluster_rows", "sample", "max_cluster_rows", "show", "seed",
                                            "score_col", "image_col", "caption_col", "model_name", "input_format"))
    summary = _run("clipscore-dedup", args, run_dedup, options)
    print(f"{summary['duplicates']:,} of {summary['rows_compared']:,} rows are near-duplicates (cosine >= "
          f"{options.threshold:g}) of a kept row, in {summary['groups']:,} groups")
    if len(summary["largest"]):
        print("largest groups (the kept row):")
        print(format_table(summary["largest"]))
    return 0


def _search(args: argparse.Namespace) -> int:
    from clipscore.jobs.search import SearchOptions, format_table, run_search

    options = _options(SearchOptions, args, ("input", "text", "image", "k", "against", "columns", "output",
                                             "output_format", "mode", "model", "model_name", "image_base_path",
                                             "input_format", "device", "allow_private_urls"))
    found = _run("clipscore-search", args, run_search, options)
    if not options.output:
        print(format_table(found) if len(found) else "(no rows with stored embeddings)")
    return 0


def _report(args: argparse.Namespace) -> int:
    from clipscore.jobs.report import ReportOptions, run_report

    _run("clipscore-report", args, run_report, _options(ReportOptions, args, (
        "input", "output", "category_col", "sample", "figures", "thresholds", "score_col", "image_col", "caption_col",
        "image_base_path", "model", "input_format", "seed", "margin", "candidates")))
    return 0


def _filter(args: argparse.Namespace) -> int:
    from clipscore.jobs.filter import FilterOptions, run_filter

    _run("clipscore-filter", args, run_filter, _options(FilterOptions, args, (
        "input", "output", "min_score", "top_fraction", "per", "score_col", "accuracy", "input_format",
        "output_format", "mode"), keep_column=args.keep_column))
    return 0


def train_options_from_args(args: argparse.Namespace):
    from clipscore.config.job import parse_set
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("py4j", "urllib3", "httpx", "filelock", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "filter":
            return _filter(args)
        if args.command == "report":
            return _report(args)
        if args.command == "search":
            return _search(args)
        if args.command == "suggest":
            return _suggest(args)
        if args.command == "dedup":
            return _dedup(args)
        cfg = config_from_args(args)
        from clipscore.scoring.plan import planned_columns
        from clipscore.jobs.tables import check_names

        check_names(cfg)  # names and models fail before any Spark start-up cost
        planned_columns(cfg)
        from clipscore.jobs.session import job_session

        with job_session(f"clipscore-{args.command}", args.master) as spark:
            if args.command == "score":
                from clipscore.jobs.score import run_score

                run_score(spark, cfg)
            else:
                from clipscore.jobs.merge import run_merge

                run_merge(spark, cfg)
    except ConfigError as exc:
        print(f"clipscore: configuration error: {exc}", file=sys.stderr)
        return 2
    return 0


def _train(args: argparse.Namespace) -> int:
    options = train_options_from_args(args)
    from clipscore.jobs.session import job_session
    from clipscore.jobs.train import check_init, run_train

    if options.init:
        check_init(options.init)  # before any Spark start-up cost
    with job_session("clipscore-train", args.master) as spark:
        run_train(spark, options)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
