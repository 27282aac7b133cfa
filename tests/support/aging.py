"""Real folder ages for the stale-staging tests: every file and folder's modification time moved back."""
from __future__ import annotations

import os
import time


def age_local(folder, seconds: float) -> None:
    """Set the mtime of ``folder`` and everything in it to ``seconds`` ago (children first)."""
    when = time.time() - seconds
    for here, dirs, files in os.walk(folder, topdown=False):
        for name in files + dirs:
            os.utime(os.path.join(here, name), (when, when))
    os.utime(folder, (when, when))


def age_hadoop(spark, path: str, seconds: float) -> None:
    """The same through Hadoop's FileSystem (``setTimes``), for any scheme the session reaches."""
    sc = spark.sparkContext
    hpath = sc._jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(sc._jsc.hadoopConfiguration())
    when = int((time.time() - seconds) * 1000)
    pending = [fs.getFileStatus(hpath)]
    statuses = []
    while pending:
        status = pending.pop()
        statuses.append(status)
        if status.isDirectory():
            pending.extend(fs.listStatus(status.getPath()))
    for status in reversed(statuses):  # children before their folder
        fs.setTimes(status.getPath(), when, -1)
