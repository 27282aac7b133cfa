"""The merge job on a local Spark with real Delta and the tiny real CLIP.

Idempotent reruns, incremental skip counts, re-scoring of changed rows, schema evolution,
multi-column keys, three-part catalog names, provenance, fail-fast on bad keys, and a merge whose
Python worker is killed (SIGKILL) half-way and is then rerun to completion.
"""
from __future__ import annotations

import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest
from pyspark.sql import functions as F

from clipscore import __version__
from clipscore.config.coerce import ConfigError
from clipscore.jobs.merge import run_merge
from clipscore.jobs.provenance import PROVENANCE_COLUMNS, score_fingerprint, table_provenance
from clipscore.jobs.score import run_score

IMAGE_NAMES = ("jpeg", "png", "grayscale", "palette", "rgba", "webp")


def _rows(odd_images, n):
    return [(i % 2, i, odd_images[IMAGE_NAMES[i % len(IMAGE_NAMES)]], f"caption number {i}") for i in range(n)]


def _snapshot(df, keys):
    return [r.asDict() for r in df.orderBy(*keys).collect()]


def _version(spark, ident):
    return spark.sql(f"DESCRIBE HISTORY {ident}").agg(F.max("version")).first()[0]


@pytest.fixture()
def source_and_target(spark, odd_images, tmp_path):
    """A Delta source (id, image bytes, caption) and a Delta target with the same rows plus a `note`."""
    source = str(tmp_path / "source")
    target = str(tmp_path / "target")
    df = spark.createDataFrame(_rows(odd_images, 10), "shard int, id int, image binary, caption string")
    df.write.format("delta").save(source)
    df.withColumn("note", F.concat(F.lit("kept "), F.col("id").cast("string"))).write.format("delta").save(target)
    return source, target


def test_three_reruns_leave_the_table_unchanged(spark, tiny_cfg, source_and_target):
    source, target = source_and_target
    cfg = tiny_cfg.replace(input=source, output=target, merge_keys=("id",))

    first = run_merge(spark, cfg)
    assert (first.rows, first.scored, first.skipped) == (10, 10, 0)
    assert first.extra["rows updated"] == 10 and first.extra["rows inserted"] == 0

    table = spark.read.format("delta").load(target)
    # Schema evolution: score and provenance columns were added; the target's own column is kept.
    assert {"similarity", "score_band", "score_error", *PROVENANCE_COLUMNS} <= set(table.columns)
    assert sorted(r.note for r in table.select("note").collect()) == sorted(f"kept {i}" for i in range(10))
    assert table.filter(F.col("similarity").isNull()).count() == 0
    row = table.filter("id = 3").first()
    assert row.score_model == tiny_cfg.model and row.score_precision == "fp32" and row.score_device == "cpu"
    assert row.score_fingerprint == score_fingerprint(cfg, "cpu", "fp32") and len(row.score_input_hash) == 64
    props = table_provenance(spark, target)
    assert props["clipscore.model"] == tiny_cfg.model
    assert props["clipscore.version"] == __version__
    assert props["clipscore.precision"] == "fp32"
    assert props["clipscore.band_edges"] == "[0.15, 0.2, 0.25, 0.28, 0.3, 0.35]"

    before = _snapshot(table, ["id"])
    version = _version(spark, f"delta.`{target}`")
    for _ in range(3):
        again = run_merge(spark, cfg)
        assert (again.rows, again.skipped, again.extra["commits"]) == (0, 10, 0)
        assert _snapshot(spark.read.format("delta").load(target), ["id"]) == before
        assert _version(spark, f"delta.`{target}`") == version  # not even an empty commit


def test_changed_rows_rescored_with_catalog_names_and_two_keys(spark, tiny_cfg, odd_images):
    src, dst = "spark_catalog.default.merge_src", "spark_catalog.default.merge_dst"
    schema = "shard int, id int, image binary, caption string"
    rows = _rows(odd_images, 8)
    spark.createDataFrame(rows, schema).write.format("delta").mode("overwrite").saveAsTable(src)
    # The target starts with half of the rows and no score columns; shard+id is the key (ids repeat per shard).
    spark.createDataFrame(rows[:4], schema).write.format("delta").mode("overwrite").saveAsTable(dst)
    try:
        cfg = tiny_cfg.replace(input=src, output=dst, merge_keys=("shard", "id"))
        first = run_merge(spark, cfg)
        assert (first.rows, first.skipped, first.extra["rows updated"], first.extra["rows inserted"]) == (8, 0, 4, 4)
        before = {(r.shard, r.id): r for r in spark.read.table(dst).collect()}

        # Change one caption, one image, add a row; the rest must be skipped and left untouched.
        changed = list(rows)
        changed[1] = (1, 1, odd_images["jpeg"], "a different caption")
        changed[2] = (0, 2, odd_images["one_pixel"], changed[2][3])
        changed.append((1, 99, odd_images["png"], "a new row"))
        spark.createDataFrame(changed, schema).write.format("delta").mode("overwrite").saveAsTable(src)

        second = run_merge(spark, cfg)
        assert (second.rows, second.skipped) == (3, 6)
        assert (second.extra["rows updated"], second.extra["rows inserted"]) == (2, 1)
        after = {(r.shard, r.id): r for r in spark.read.table(dst).collect()}
        assert len(after) == 9 and spark.read.table(dst).count() == 9  # no duplicates
        for key in [(1, 1), (0, 2)]:
            assert after[key].score_input_hash != before[key].score_input_hash
            assert after[key].scored_at > before[key].scored_at
            assert after[key].similarity != pytest.approx(before[key].similarity, abs=1e-6)
        assert after[(1, 1)].caption == "a different caption"
        assert after[(1, 99)].similarity is not None
        for key in [(0, 0), (1, 3), (0, 4), (1, 5), (0, 6), (1, 7)]:
            assert after[key].asDict() == before[key].asDict()

        # A score-affecting change (band edges) makes every stored score stale: all rows re-scored.
        third = run_merge(spark, cfg.replace(band_edges=(0.0, 0.5)))
        assert (third.rows, third.skipped) == (9, 0)
        assert set(third.rows_per_band) == {"b0_below_0.00", "b1_0.00_to_0.50", "b2_0.50_and_above", "error"}
    finally:
        spark.sql(f"DROP TABLE IF EXISTS {src}")
        spark.sql(f"DROP TABLE IF EXISTS {dst}")


def test_bad_keys_and_targets_fail_fast(spark, tiny_cfg, odd_images, tmp_path, source_and_target):
    source, target = source_and_target
    schema = "shard int, id int, image binary, caption string"
    dup = str(tmp_path / "dup")
    rows = _rows(odd_images, 4) + [(0, 2, odd_images["png"], "second row with id 2")]
    spark.createDataFrame(rows, schema).write.format("delta").save(dup)
    with pytest.raises(ConfigError, match=r"occur more than once.*id=2 \(2 rows\)"):
        run_merge(spark, tiny_cfg.replace(input=dup, output=target, merge_keys=("id",)))

    nulls = str(tmp_path / "nulls")
    spark.createDataFrame([(0, None, odd_images["png"], "x")], schema).write.format("delta").save(nulls)
    with pytest.raises(ConfigError, match="null merge key"):
        run_merge(spark, tiny_cfg.replace(input=nulls, output=target, merge_keys=("id",)))

    with pytest.raises(ConfigError, match="not an existing Delta table"):
        run_merge(spark, tiny_cfg.replace(input=source, output=str(tmp_path / "missing"), merge_keys=("id",)))
    with pytest.raises(ConfigError, match="No merge keys"):
        run_merge(spark, tiny_cfg.replace(input=source, output=target))
    with pytest.raises(ConfigError, match="'nope' is not in the input"):
        run_merge(spark, tiny_cfg.replace(input=source, output=target, merge_keys=("nope",)))
    assert "similarity" not in spark.read.format("delta").load(target).columns  # nothing was merged


def test_score_job_records_provenance(spark, tiny_cfg, tmp_path, source_and_target):
    source, _ = source_and_target
    output = str(tmp_path / "scored")
    run_score(spark, tiny_cfg.replace(input=source, output=output))
    props = table_provenance(spark, output)
    assert props["clipscore.model"] == tiny_cfg.model
    assert props["clipscore.model_revision"] == ""
    assert props["clipscore.score_fingerprint"] == score_fingerprint(tiny_cfg, "cpu", "fp32")
    assert props["clipscore.device"] == "cpu" and props["clipscore.precision"] == "fp32"
    assert props["clipscore.version"] == __version__


# -------------------------------------------------------------------------------------------------
# Killed and rerun
# -------------------------------------------------------------------------------------------------
class _HangingImages(BaseHTTPRequestHandler):
    """``/img/<name>`` answers at once until ``armed``; from then on every request signals ``hit`` and
    answers only after ``release`` (so whichever chunk runs after the first commit hangs)."""

    images: dict[str, bytes] = {}
    armed = threading.Event()
    hit = threading.Event()
    release = threading.Event()

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        if type(self).armed.is_set() and not type(self).release.is_set():
            type(self).hit.set()
            type(self).release.wait(60)
        body = self.images.get(self.path.rsplit("/", 1)[-1])
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _python_workers() -> list[psutil.Process]:
    """Spark's forked Python workers under this test process: children of ``pyspark.daemon``."""
    workers = []
    for proc in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if "pyspark.daemon" in " ".join(proc.cmdline()) and proc.parent().pid != os.getpid():
                workers.extend(proc.children())
        except psutil.NoSuchProcess:
            pass
    return workers


def test_killed_merge_resumes_without_duplicates_or_losses(spark, tiny_cfg, odd_images, tmp_path):
    _HangingImages.images = odd_images
    _HangingImages.armed.clear()
    _HangingImages.hit.clear()
    _HangingImages.release.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HangingImages)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        n = 8
        rows = [(i, f"{base}/img/{IMAGE_NAMES[i % 6]}", f"pair {i}") for i in range(n)]
        source, target = str(tmp_path / "source"), str(tmp_path / "target")
        df = spark.createDataFrame(rows, "id int, image string, caption string")
        df.write.format("delta").save(source)
        df.write.format("delta").save(target)
        cfg = tiny_cfg.replace(input=source, output=target, merge_keys=("id",), merge_chunk_rows=4,
                               http_timeout_s=30.0)

        killed: list[int] = []

        def kill_when_stuck():
            if _HangingImages.hit.wait(120):
                for proc in _python_workers():
                    proc.send_signal(signal.SIGKILL)
                    killed.append(proc.pid)

        killer = threading.Thread(target=kill_when_stuck, daemon=True)
        killer.start()
        commits: list[int] = []

        def committed(index, total):
            commits.append((index, total))
            _HangingImages.armed.set()  # the next chunk's downloads hang until its workers are killed

        with pytest.raises(Exception, match="(?i)python worker|crash|exited"):
            run_merge(spark, cfg, on_chunk_committed=committed)
        killer.join(5)
        _HangingImages.release.set()
        assert killed and commits == [(0, 2)]  # 8 rows in chunks of 4: one commit, then the kill

        # Whole chunks only: the first commit is in, the killed one left no trace; no staging is left.
        table = spark.read.format("delta").load(target)
        done = {r.id for r in table.filter(F.col("score_fingerprint").isNotNull()).collect()}
        assert len(done) == 4
        assert table.count() == n
        assert not [p for p in (tmp_path / ".target__clipscore_staging").glob("run_*")]

        rerun = run_merge(spark, cfg)
        assert rerun.skipped == len(done) and rerun.rows == n - len(done)
        final = spark.read.format("delta").load(target)
        assert final.count() == n and final.select("id").distinct().count() == n
        assert final.filter(F.col("score_fingerprint").isNull()).count() == 0
        assert final.filter(F.col("score_error").isNotNull()).count() == 0
        assert final.filter(F.col("similarity").isNull()).count() == 0
    finally:
        _HangingImages.release.set()
        server.shutdown()
        server.server_close()


# -------------------------------------------------------------------------------------------------
# What ran, and what is retried
# -------------------------------------------------------------------------------------------------
def test_provenance_records_the_resolved_device_and_precision(spark, tiny_cfg, source_and_target):
    source, target = source_and_target
    cfg = tiny_cfg.replace(input=source, output=target, merge_keys=("id",), precision="auto", device="auto")
    run_merge(spark, cfg)
    rows = spark.read.format("delta").load(target).select("score_device", "score_precision", "score_fingerprint")
    assert {tuple(r) for r in rows.collect()} == {("cpu", "fp32", score_fingerprint(cfg, "cpu", "fp32"))}
    # "auto" on a GPU would be another fingerprint: a GPU fp16 run never reuses these rows.
    assert score_fingerprint(cfg, "cuda", "fp16") != score_fingerprint(cfg, "cpu", "fp32")
    props = table_provenance(spark, target)
    assert (props["clipscore.device"], props["clipscore.precision"]) == ("cpu", "fp32")
    # A rerun that asks for fp32 explicitly resolves to the same runtime: nothing to do.
    assert run_merge(spark, cfg.replace(precision="fp32")).skipped == 10


class _FlakyImages(BaseHTTPRequestHandler):
    """Answers 503 to every request while ``down`` is set, else the image; counts requests."""

    image = b""
    down = threading.Event()
    requests = 0

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        type(self).requests += 1
        if type(self).down.is_set():
            self.send_error(503)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.image)))
        self.end_headers()
        self.wfile.write(self.image)


def test_transient_errors_are_retried_by_the_next_merge(spark, tiny_cfg, odd_images, tmp_path):
    _FlakyImages.image = odd_images["jpeg"]
    _FlakyImages.down.set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FlakyImages)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        rows = [(1, f"{base}/a.jpg", "a cat"), (2, odd_images["png"], "a dog"), (3, f"{base}/b.jpg", "")]
        df = spark.createDataFrame([(i, u if isinstance(u, str) else None, c) for i, u, c in rows],
                                   "id int, image string, caption string")
        source, target = str(tmp_path / "source"), str(tmp_path / "target")
        df.write.format("delta").save(source)
        df.write.format("delta").save(target)
        cfg = tiny_cfg.replace(input=source, output=target, merge_keys=("id",), http_retries=0)

        first = run_merge(spark, cfg)
        table = {r.id: r for r in spark.read.format("delta").load(target).collect()}
        assert table[1].score_error.startswith("url_server_error") and table[1].similarity is None
        assert table[2].score_error.startswith("image_null")  # final: not retried
        assert table[3].score_error.startswith("caption_empty")
        assert first.rows == 3

        _FlakyImages.down.clear()  # the server recovered
        second = run_merge(spark, cfg)
        assert (second.rows, second.skipped) == (1, 2)  # only the transient row is scored again
        table = {r.id: r for r in spark.read.format("delta").load(target).collect()}
        assert table[1].score_error is None and table[1].similarity is not None
        assert run_merge(spark, cfg).rows == 0  # now it is done
    finally:
        server.shutdown()
        server.server_close()


def test_fingerprint_follows_the_preprocessing_mode_and_keeps_old_exact_tables_valid(tiny_cfg):
    import hashlib
    import json

    exact = score_fingerprint(tiny_cfg, "cpu", "fp32")
    assert score_fingerprint(tiny_cfg.replace(preprocess="fast"), "cpu", "fp32") != exact
    # What a table scored before `preprocess` existed (jpeg_draft=false) carries: still equal.
    before = {"model": tiny_cfg.model, "model_revision": tiny_cfg.model_revision, "jpeg_draft": False,
              "gpu_decode": False, "band_edges": [float(e) for e in tiny_cfg.band_edges]}
    text = json.dumps(before, sort_keys=True, separators=(",", ":")) + "|cpu|fp32"
    assert exact == hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
