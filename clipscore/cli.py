"""Command line: ``clipscore score`` and ``clipscore merge`` (also ``spark-submit jobs/score.py``).

``main()`` only parses arguments, builds the config, gets a session (and stops it only if it made
it) and maps configuration errors to exit code 2 with the message that says what to change.
"""
from __future__ import annotations

import argparse
import logging
import sys

from clipscore import __version__
from clipscore.config import ConfigError, ModelSpec, default_config_path, load_config

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
    parser = argparse.ArgumentParser(prog="clipscore", description="Score image-caption pairs with CLIP on Spark.")
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
    return parser


def train_options_from_args(args: argparse.Namespace):
    from clipscore.config import parse_set
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
    for noisy in ("py4j", "urllib3", "httpx", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if args.command == "train":
            return _train(args)
        cfg = config_from_args(args)
        from clipscore.columns import planned_columns
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
