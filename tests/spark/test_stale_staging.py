"""Staging folders of killed runs: found, aged and removed on a local disk and on a second Hadoop filesystem.

The second filesystem is Hadoop's ``viewfs://``: a mount table (set on the session's Hadoop configuration)
maps ``viewfs://<table>/stage`` onto a local folder, so nothing leaves this machine, yet every listing, size
(``getContentSummary``), age and delete must go through Hadoop's FileSystem API: ``os`` cannot read a
``viewfs://`` path. Ages are real modification times, set with Hadoop's ``setTimes`` or ``os.utime``.
"""
from __future__ import annotations

import logging
import uuid

import pytest

from clipscore.jobs import staging
from clipscore.jobs.cli import main as cli_main
from clipscore.jobs.stale import BACKUP_TAG, STAGING_TAG
from clipscore.jobs.writes import write_table
from support.aging import age_hadoop, age_local

DAY = 24 * 3600


@pytest.fixture()
def viewfs_root(spark, tmp_path):
    """``viewfs://<fresh mount table>/stage`` over the local folder ``tmp_path/under``."""
    under = tmp_path / "under"
    under.mkdir()
    table = f"clip{uuid.uuid4().hex[:8]}"  # a fresh table: Hadoop caches one FileSystem per authority
    spark.sparkContext._jsc.hadoopConfiguration().set(f"fs.viewfs.mounttable.{table}.link./stage", under.as_uri())
    return f"viewfs://{table}/stage", under


def _write_run(spark, folder: str, rows: int = 50) -> None:
    spark.range(rows).selectExpr("id", "repeat('x', 100) AS pad").write.parquet(folder)


def test_stale_runs_removed_on_a_local_disk_with_their_size_logged(spark, tmp_path, caplog):
    root = tmp_path / ".target__clipscore_staging"
    old, young = root / "run_1_old", root / "run_2_young"
    _write_run(spark, str(old))
    _write_run(spark, str(young))
    (root / "not_a_run").mkdir()
    age_local(old, 2 * DAY)
    age_local(root / "not_a_run", 9 * DAY)
    size = sum(p.stat().st_size for p in old.rglob("*") if p.is_file() and not p.name.endswith(".crc"))

    with caplog.at_level(logging.INFO, logger="clipscore"):
        removed = staging.remove_stale_runs(spark, str(root), "1d")

    assert [r.path.rstrip("/").rsplit("/", 1)[-1] for r in removed] == ["run_1_old"]
    assert not old.exists() and young.exists() and (root / "not_a_run").exists()
    stale = [r.getMessage() for r in caplog.records if "a stale staging folder" in r.getMessage()]
    assert len(stale) == 1 and "run_1_old" in stale[0] and "unchanged for 2d" in stale[0]
    assert f"({removed[0].bytes:,} bytes)" in stale[0] and removed[0].bytes >= size > 0
    kept = [r.getMessage() for r in caplog.records if "another run" in r.getMessage()]
    assert len(kept) == 1 and "run_2_young" in kept[0] and "clipscore clean --staging" in kept[0]

    # The age is configurable: with 12h the young one (minutes old) still stays, with 1s it goes.
    assert staging.remove_stale_runs(spark, str(root), "12h") == []
    age_local(young, 5)
    assert len(staging.remove_stale_runs(spark, str(root), "1s")) == 1 and not young.exists()


def test_stale_runs_removed_through_hadoop_on_viewfs(spark, viewfs_root, caplog):
    root, under = viewfs_root
    _write_run(spark, f"{root}/run_1_old")
    _write_run(spark, f"{root}/run_2_young")
    assert (under / "run_1_old").is_dir()  # the mount table maps onto the local folder
    age_hadoop(spark, f"{root}/run_1_old", 3 * DAY)
    sc = spark.sparkContext
    hpath = sc._jvm.org.apache.hadoop.fs.Path(f"{root}/run_1_old")
    fs = hpath.getFileSystem(sc._jsc.hadoopConfiguration())
    assert fs.getClass().getName() == "org.apache.hadoop.fs.viewfs.ViewFileSystem"
    summary_bytes = int(fs.getContentSummary(hpath).getLength())

    with caplog.at_level(logging.INFO, logger="clipscore"):
        removed = staging.remove_stale_runs(spark, root, "2d")

    assert [r.path for r in removed] == [f"{root}/run_1_old"] and removed[0].bytes == summary_bytes > 0
    assert not (under / "run_1_old").exists() and (under / "run_2_young").is_dir()
    stale = [r.getMessage() for r in caplog.records if "a stale staging folder" in r.getMessage()]
    assert len(stale) == 1 and f"{root}/run_1_old" in stale[0] and f"({summary_bytes:,} bytes)" in stale[0]


def test_parquet_overwrite_removes_its_stale_staging_siblings_and_keeps_backups(spark, tmp_path):
    out = tmp_path / "scores"
    spark.range(3).write.parquet(str(out))
    old_staging = tmp_path / f".scores{STAGING_TAG}dead01"
    young_staging = tmp_path / f".scores{STAGING_TAG}live02"
    other_output = tmp_path / f".other{STAGING_TAG}dead03"
    backup = tmp_path / f".scores{BACKUP_TAG}dead04"
    for folder in (old_staging, young_staging, other_output, backup):
        _write_run(spark, str(folder))
    for folder in (old_staging, other_output, backup):
        age_local(folder, 2 * DAY)

    write_table(spark.range(5), str(out), "parquet", "overwrite", [])

    assert spark.read.parquet(str(out)).count() == 5
    assert not old_staging.exists()  # a killed overwrite's staging of this output
    assert young_staging.exists() and other_output.exists() and backup.exists()


def test_clean_command_lists_and_removes_on_viewfs(spark, viewfs_root, capsys):
    root, under = viewfs_root
    for name in ("run_1_old", "run_2_young", f".scores{STAGING_TAG}dead01", f".scores{BACKUP_TAG}dead02"):
        _write_run(spark, f"{root}/{name}")
    for name in ("run_1_old", f".scores{STAGING_TAG}dead01", f".scores{BACKUP_TAG}dead02"):
        age_hadoop(spark, f"{root}/{name}", 2 * DAY + 3600)

    assert cli_main(["clean", "--staging", root, "--older-than", "1d", "--dry-run"]) == 0
    listing = capsys.readouterr().out
    assert sorted(p.name for p in under.iterdir()) == sorted(
        ["run_1_old", "run_2_young", f".scores{STAGING_TAG}dead01", f".scores{BACKUP_TAG}dead02"])
    lines = {line.split()[-1]: line for line in listing.splitlines() if "://" in line}
    assert "would remove" in lines[f"{root}/run_1_old"] and "2d 1h" in lines[f"{root}/run_1_old"]
    assert "would remove" in lines[f"{root}/.scores{STAGING_TAG}dead01"]
    assert "kept (younger)" in lines[f"{root}/run_2_young"]
    assert "kept (backup)" in lines[f"{root}/.scores{BACKUP_TAG}dead02"]
    assert "would remove 2 of 4 folder(s)" in listing

    assert cli_main(["clean", "--staging", root, "--older-than", "2d"]) == 0
    assert "removed 2 of 4 folder(s)" in capsys.readouterr().out
    assert sorted(p.name for p in under.iterdir()) == sorted(["run_2_young", f".scores{BACKUP_TAG}dead02"])


def test_clean_command_fails_before_any_work_on_a_bad_age(tmp_path, capsys):
    assert cli_main(["clean", "--staging", str(tmp_path), "--older-than", "two days"]) == 2
    assert "--older-than must be a number with a unit s, m, h or d" in capsys.readouterr().err
