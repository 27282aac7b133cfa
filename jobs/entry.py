"""Running one command: logging, a session, and configuration errors as exit code 2.

Shared by ``clipscore`` (``clipscore.jobs.cli``, which dispatches to every job) and the spark-submit
entry points (``spark-submit jobs/score.py``: ``submit("score", run_score)``), so a job file runs its
own command the way the CLI does without importing the CLI.

Quiet by default: below ``--log-level DEBUG`` a command prints its own progress and summary only.
A local session it starts keeps Spark's start-up output (Ivy, launcher, log4j) to itself and logs
only Spark's errors (``clipscore.jobs.session``); transformers logs only errors and draws no progress
bars, in this process and in the Python workers started from it (the environment they inherit).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Callable

from clipscore.config.coerce import ConfigError
from clipscore.jobs.args import build_parser, config_from_args, train_options_from_args

log = logging.getLogger("clipscore")

# Loggers of libraries that talk too much at INFO.
NOISY_LOGGERS = ("py4j", "urllib3", "httpx", "filelock", "faiss.loader")
# Below DEBUG: what transformers and huggingface_hub read when they are imported (here and in the workers).
QUIET_ENVIRONMENT = {"TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def is_debug(level: str) -> bool:
    """Whether ``--log-level`` asks for everything (DEBUG or lower)."""
    value = logging.getLevelName(str(level).upper())
    return isinstance(value, int) and value <= logging.DEBUG


def configure_logging(level: str) -> None:
    """The clipscore log format at ``level``; below DEBUG, the libraries' own output quietened too."""
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not is_debug(level):
        for key, value in QUIET_ENVIRONMENT.items():
            os.environ.setdefault(key, value)


def run_job(args: argparse.Namespace, job: Callable[[Any, Any], Any], options: Any,
            check: Callable[[Any], None] | None = None) -> Any:
    """``check(options)`` (before any Spark start-up cost), then ``job(spark, options)`` in the active session,
    or in one made for it (quiet below DEBUG) and stopped afterwards."""
    from clipscore.jobs.session import job_session

    if check is not None:
        check(options)
    with job_session(f"clipscore-{args.command}", args.master, quiet=not is_debug(args.log_level)) as spark:
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
