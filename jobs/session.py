"""Getting a SparkSession without taking over one that already exists.

Databricks notebooks, ``spark-submit`` and Spark Connect hand us a session: we use it as it is and
never stop it. Only from plain Python (``clipscore score`` on a laptop, ``make demo``, tests) do we
start a local session ourselves, with Delta Lake wired in from the ``delta-spark`` pip package.

A quiet local session (the CLI's, below ``--log-level DEBUG``) keeps the JVM's start-up output to itself
(Ivy's dependency report, the launcher's and log4j's notices; shown only if the start fails) and logs
only Spark's errors (``spark.log.level=ERROR``).
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import uuid
from contextlib import contextmanager

from pyspark.sql import SparkSession

log = logging.getLogger("clipscore")

QUIET_LOG_LEVEL = "ERROR"  # Spark's log level in a quiet session


def active_session() -> SparkSession | None:
    return SparkSession.getActiveSession()


def local_session(app_name: str = "clipscore", master: str | None = None, extra_conf: dict | None = None,
                  quiet: bool = False) -> SparkSession:
    """A local SparkSession with Delta Lake; the same Python for driver and workers.

    ``quiet``: Spark logs only errors, and what the JVM prints while it starts is shown only if the start fails.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.appName(app_name)
        .master(master or os.environ.get("CLIPSCORE_SPARK_MASTER", "local[*]"))
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.python.worker.reuse", "true")
    )
    if quiet:
        builder = builder.config("spark.log.level", QUIET_LOG_LEVEL)
    for key, value in (extra_conf or {}).items():
        builder = builder.config(key, value)
    from delta import configure_spark_with_delta_pip

    builder = configure_spark_with_delta_pip(builder)
    if not quiet:
        return builder.getOrCreate()
    with held_startup_output():
        return builder.getOrCreate()


def get_or_create_session(app_name: str = "clipscore", master: str | None = None,
                          quiet: bool = False) -> tuple[SparkSession, bool]:
    """The active session if there is one (owned by someone else), else a new local one (ours)."""
    session = active_session()
    if session is not None:
        return session, False
    if os.environ.get("PYSPARK_GATEWAY_PORT"):  # launched by spark-submit: its --conf/--packages apply
        return SparkSession.builder.appName(app_name).getOrCreate(), True
    return local_session(app_name, master, quiet=quiet), True


@contextmanager
def job_session(app_name: str, master: str | None = None, quiet: bool = False):
    """A session for one command: the active one, else a new one (``quiet``: see ``local_session``) that is
    stopped afterwards."""
    spark, owned = get_or_create_session(app_name, master, quiet)
    try:
        yield spark
    finally:
        if owned:
            spark.stop()


@contextmanager
def session_conf(spark: SparkSession, settings: dict[str, str], optional: tuple[str, ...] = ()):
    """Set session options for one block and put the previous values back afterwards.

    Keys in ``optional`` may be refused (Databricks serverless restricts many confs); then they are skipped.
    """
    previous = {}
    for key, value in settings.items():
        try:
            previous[key] = spark.conf.get(key, None)
            spark.conf.set(key, value)
        except Exception:  # noqa: BLE001 - only for optional keys, re-raised otherwise
            if key not in optional:
                raise
            previous.pop(key, None)
            log.debug("session option %s could not be set here; relying on the SQL clause instead", key)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


@contextmanager
def held_startup_output():
    """Hold back what is written to this process's stderr while the block runs; show it only if the block raises.

    For the start of a JVM (``getOrCreate`` launching ``spark-submit``): file descriptor 2 goes through a
    pipe during the block, and the JVM inherits it. Lines written before the block ends are held (Ivy's
    dependency report, the launcher's warnings, log4j's notices) and dropped once the session is up, or
    written out when the start fails, so its reason is never lost. Whatever the JVM writes afterwards
    (error logs, Python workers' output) passes straight through.
    """
    try:
        sys.stderr.flush()
        original = os.dup(2)
        read_end, write_end = os.pipe()
    except (OSError, ValueError):  # no usable file descriptor 2 here: leave the output alone
        yield
        return
    marker = f"--clipscore-jvm-started-{uuid.uuid4().hex}--\n".encode()
    state = {"failed": False}
    released = threading.Event()

    def pump() -> None:
        held: list[bytes] = []
        holding = True
        try:
            with os.fdopen(read_end, "rb") as pipe:
                for line in pipe:
                    if not holding:
                        _write_fd(original, line)
                    elif line == marker:
                        holding = False
                        if state["failed"]:
                            _write_fd(original, b"".join(held))
                        held.clear()
                        released.set()
                    else:
                        held.append(line)
        except Exception:  # noqa: BLE001 - this thread must never take the job down
            pass
        finally:
            released.set()
            try:
                os.close(original)
            except OSError:
                pass

    threading.Thread(target=pump, name="clipscore-jvm-output", daemon=True).start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    except BaseException:
        state["failed"] = True
        raise
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        _write_fd(2, b"\n" + marker)  # after the JVM's start-up lines: the pump stops holding here
        os.dup2(original, 2)  # our stderr back; a JVM started in the block keeps the pipe
        released.wait(10)


def _write_fd(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        pass
