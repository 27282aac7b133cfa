"""Getting a SparkSession without taking over one that already exists.

Databricks notebooks, ``spark-submit`` and Spark Connect hand us a session: we use it as it is and
never stop it. Only from plain Python (``clipscore score`` on a laptop, ``make demo``, tests) do we
start a local session ourselves, with Delta Lake wired in from the ``delta-spark`` pip package.
"""
from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager

from pyspark.sql import SparkSession

log = logging.getLogger("clipscore")


def active_session() -> SparkSession | None:
    return SparkSession.getActiveSession()


def local_session(app_name: str = "clipscore", master: str | None = None, extra_conf: dict | None = None) -> SparkSession:
    """A local SparkSession with Delta Lake; the same Python for driver and workers."""
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
    for key, value in (extra_conf or {}).items():
        builder = builder.config(key, value)
    from delta import configure_spark_with_delta_pip

    return configure_spark_with_delta_pip(builder).getOrCreate()


def get_or_create_session(app_name: str = "clipscore", master: str | None = None) -> tuple[SparkSession, bool]:
    """The active session if there is one (owned by someone else), else a new local one (ours)."""
    session = active_session()
    if session is not None:
        return session, False
    if os.environ.get("PYSPARK_GATEWAY_PORT"):  # launched by spark-submit: its --conf/--packages apply
        return SparkSession.builder.appName(app_name).getOrCreate(), True
    return local_session(app_name, master), True


@contextmanager
def job_session(app_name: str, master: str | None = None):
    """A session for one command: the active one, else a new one that is stopped afterwards."""
    spark, owned = get_or_create_session(app_name, master)
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
