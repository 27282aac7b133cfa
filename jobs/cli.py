"""Command line: ``clipscore score|merge|train|filter|report|search|dedup|suggest`` (``spark-submit jobs/score.py``).

``main()`` only parses arguments, builds each command's options, gets a session (and stops it only if it
made it) and maps configuration errors to exit code 2 with the message that says what to change. The
flags are ``clipscore.jobs.args``; running a command (logging, session, exit code) is ``clipscore.jobs.entry``.
This is the one module of ``clipscore.jobs`` that imports the job modules.
"""
from __future__ import annotations

import argparse

# build_parser, config_from_args and train_options_from_args are imported from here by tests and older code.
from clipscore.jobs.args import build_parser, config_from_args, options_from_args, train_options_from_args
from clipscore.jobs.entry import run_command, run_job

__all__ = ["build_parser", "config_from_args", "main", "train_options_from_args"]


def main(argv: list[str] | None = None) -> int:
    return run_command(argv, _dispatch)


def _dispatch(args: argparse.Namespace) -> int:
    command = {"score": _score, "merge": _merge, "train": _train, "filter": _filter, "report": _report,
               "search": _search, "suggest": _suggest, "dedup": _dedup, "probe": _probe, "export": _export,
               "clean": _clean}[args.command]
    return command(args)


def _score(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    from clipscore.jobs.pipeline import early_checks
    from clipscore.jobs.score import run_score

    run_job(args, run_score, cfg, check=early_checks)  # names and models fail before any Spark start-up cost
    return 0


def _merge(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    from clipscore.jobs.merge import run_merge
    from clipscore.jobs.pipeline import early_checks

    run_job(args, run_merge, cfg, check=early_checks)
    return 0


def _train(args: argparse.Namespace) -> int:
    options = train_options_from_args(args)
    from clipscore.jobs.train import check_options, run_train

    run_job(args, run_train, options, check=check_options)  # the init model, before any Spark start-up cost
    return 0


def _filter(args: argparse.Namespace) -> int:
    from clipscore.jobs.filter import FilterOptions, run_filter

    run_job(args, run_filter, options_from_args(FilterOptions, args, (
        "input", "output", "min_score", "top_fraction", "per", "score_col", "accuracy", "input_format",
        "output_format", "mode", "where", "preset"), keep_column=args.keep_column))
    return 0


def _report(args: argparse.Namespace) -> int:
    from clipscore.jobs.report import ReportOptions, run_report

    run_job(args, run_report, options_from_args(ReportOptions, args, (
        "input", "output", "category_col", "sample", "figures", "thresholds", "score_col", "image_col", "caption_col",
        "image_base_path", "model", "input_format", "seed", "margin", "candidates", "where", "preset")))
    return 0


def _search(args: argparse.Namespace) -> int:
    from clipscore.jobs.search import SearchOptions, format_table, run_search

    options = options_from_args(SearchOptions, args, ("input", "text", "image", "k", "against", "columns", "output",
                                                      "output_format", "mode", "model", "model_name",
                                                      "image_base_path", "input_format", "device",
                                                      "allow_private_urls"))
    found = run_job(args, run_search, options)
    if not options.output:
        print(format_table(found) if len(found) else "(no rows with stored embeddings)")
    return 0


def _suggest(args: argparse.Namespace) -> int:
    from clipscore.jobs.search import format_table
    from clipscore.jobs.suggest import SuggestOptions, run_suggest

    options = options_from_args(SuggestOptions, args, ("input", "below", "margin", "candidates", "output",
                                                       "output_format", "mode", "score_col", "caption_col",
                                                       "image_col", "model_name", "show", "seed", "input_format"))
    summary = run_job(args, run_suggest, options)
    print(f"{summary['suggested']:,} of {summary['rows_below']:,} rows below {options.below:g} have a better caption "
          f"among {summary['candidates']:,} candidates ({summary['distinct_captions']:,} distinct captions)")
    if len(summary["best"]):
        print(format_table(summary["best"]))
    return 0


def _dedup(args: argparse.Namespace) -> int:
    from clipscore.jobs.dedup import DedupOptions, run_dedup
    from clipscore.jobs.search import format_table

    options = options_from_args(DedupOptions, args, ("input", "threshold", "output", "output_format", "mode", "key",
                                                     "kind", "clusters", "cluster_rows", "sample", "max_cluster_rows",
                                                     "show", "seed", "score_col", "image_col", "caption_col",
                                                     "model_name", "input_format"))
    summary = run_job(args, run_dedup, options)
    print(f"{summary['duplicates']:,} of {summary['rows_compared']:,} rows are near-duplicates (cosine >= "
          f"{options.threshold:g}) of a kept row, in {summary['groups']:,} groups")
    if len(summary["largest"]):
        print("largest groups (the kept row):")
        print(format_table(summary["largest"]))
    return 0


def _clean(args: argparse.Namespace) -> int:
    from clipscore.jobs.clean import CleanOptions, check_options, format_rows, run_clean

    options = CleanOptions(staging=args.staging, older_than=args.older_than, dry_run=args.dry_run)
    rows = run_job(args, run_clean, options, check=check_options)
    print(format_rows(rows, options))
    return 1 if any(r.action == "failed" for r in rows) else 0




def _probe(args: argparse.Namespace) -> int:
    from clipscore.jobs.probe import ProbeOptions, run_probe

    run_job(args, run_probe, options_from_args(ProbeOptions, args, (
        "input", "output", "label_col", "model_name", "val_fraction", "reg_param", "max_iter", "seed", "input_format")))
    return 0


def _export(args: argparse.Namespace) -> int:
    from clipscore.jobs.export import ExportOptions, run_export

    run_job(args, run_export, options_from_args(ExportOptions, args, (
        "input", "output", "format", "shard_rows", "shard_bytes", "key", "image_col", "caption_col", "image_base_path",
        "include_embeddings", "mode", "input_format")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
