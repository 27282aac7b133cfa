"""Running one command: logging, a session, and configuration errors as exit code 2.

Shared by ``clipscore`` (``clipscore.jobs.cli``, which dispatches to every job) and the spark-submit
entry points (``spark-submit jobs/score.py``: ``submit("score", run_score)``), so a job file runs its
own command the way the CLI does without importing the CLI.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Callable

from clipscore.config.coerce import ConfigError
from clipscore.jobs.args import build_parser, config_from_args, train_options_from_args

log = logging.getLogger("clipscore")

# Loggers of libraries that talk too much at INFO.
NOISY_LOGGERS = ("py4j", "urllib3", "httpx", "filelock", "faiss.loader")


def configure_logging(level: str) -> None:
    """The clipscore log format at ``level``."""
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_job(args: argparse.Namespace, job: Callable[[Any, Any], Any], options: Any,
            check: Callable[[Any], None] | None = None) -> Any:
    """``check(options)`` (before any Spark start-up cost), then ``job(spark, options)`` in the active session,
    or in one made for it and stopped afterwards."""
    from clipscore.jobs.session import job_session

    if check is not None:
        check(options)
    with job_session(f"clipscore-{args.command}", args.master) as spark:
        return job(spark, options)


def run_command(argv: list[str] | None, dispatch: Callable[[argparse.Namespace], int]) -> int:
    """Parse ``argv`` (the CLI's flags), set up logging and run ``dispatch(args)``; a ConfigError is exit code 2."""
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        return dispatch(args)
    except ConfigError as exc:
        print(f"clipscore: configuration error: {exc}", file=sys.stderr)
        return 2


def job_options(args: argparse.Namespace) -> Any:
    """The options of a command a job file runs: the scoring config (score, merge) or the training options."""
    return train_options_from_args(args) if args.command == "train" else config_from_args(args)


def submit(command: str, job: Callable[[Any, Any], Any], argv: list[str] | None = None,
           check: Callable[[Any], None] | None = None) -> int:
    """A job file's entry point (``spark-submit jobs/score.py ...``): ``command``'s flags, then ``job`` run as the
    CLI runs it. ``argv`` defaults to ``sys.argv[1:]``."""
    argv = sys.argv[1:] if argv is None else argv

    def dispatch(args: argparse.Namespace) -> int:
        run_job(args, job, job_options(args), check)
        return 0

    return run_command([command, *argv], dispatch)
