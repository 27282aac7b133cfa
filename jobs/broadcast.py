"""Sending one driver-side value (centroids, caption candidates) to the executors, on classic Spark and Spark Connect."""
from __future__ import annotations

import logging
from typing import Any, Callable

from pyspark.sql import SparkSession

log = logging.getLogger("clipscore")


def share(spark: SparkSession, value: Any) -> Callable[[], Any]:
    """A getter for ``value`` on the executors: a broadcast variable where the JVM is reachable, else the value."""
    try:
        handle = spark.sparkContext.broadcast(value)
    except Exception:  # noqa: BLE001 - Spark Connect has no SparkContext: the value travels with each task
        log.info("no SparkContext (Spark Connect): the shared value travels inside each task")
        return lambda: value
    return lambda: handle.value
