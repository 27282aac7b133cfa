"""Linear at scale: each row goes through the model once, merge plans once, the Python API is bounded."""
import pandas as pd
import pytest
from pyspark.sql import functions as F

from clipscore.config.coerce import ConfigError
from clipscore.jobs import staging
from clipscore.jobs.merge import run_merge
from clipscore.jobs.score import MAX_BYTES_KEY, MAX_RECORDS_KEY, add_scores, run_score
from support.images import encode, photo_like
from support.logs import pairs_scored


@pytest.fixture(scope="module")
def pairs_table(spark, tmp_path_factory, odd_images):
    """40 rows over 3 input partitions: 36 scorable pairs (images and captions repeat), 4 bad rows."""
    images = [encode(photo_like(40, 30, seed=s), "PNG") for s in range(6)]
    rows = [(i, images[i % 6], f"caption {i % 9}", f"extra {i}") for i in range(36)]
    rows += [(36, b"", "empty", "x"), (37, None, "null", "x"), (38, images[0], None, "x"), (39, images[1], " ", "x")]
    path = str(tmp_path_factory.mktemp("scale") / "pairs")
    spark.createDataFrame(rows, "id int, image binary, caption string, extra string").repartition(3) \
        .write.format("delta").save(path)
    return path


def test_score_sends_each_row_to_the_model_once(spark, tiny_cfg, pairs_table, pair_log, tmp_path):
    before = pairs_scored(pair_log)
    out = str(tmp_path / "scored")
    summary = run_score(spark, tiny_cfg.replace(input=pairs_table, output=out, max_records_per_batch=7))
    written = spark.read.format("delta").load(out)
    assert written.count() == 40 and summary.scored == 36
    assert pairs_scored(pair_log) - before == written.filter(F.col("similarity").isNotNull()).count() == 36


def test_merge_sends_each_row_to_the_model_once_and_stages_once(spark, tiny_cfg, pairs_table, pair_log, tmp_path):
    target = str(tmp_path / "target")
    spark.read.format("delta").load(pairs_table).select("id", "extra").write.format("delta").save(target)
    cfg = tiny_cfg.replace(input=pairs_table, output=target, merge_keys=("id",), merge_chunk_rows=9)
    staged_reads = []
    original = staging.read_chunk

    def counting_read_chunk(spark_, staged, index):
        staged_reads.append((index, staged.chunks[index]))
        return original(spark_, staged, index)

    before = pairs_scored(pair_log)
    staging.read_chunk = counting_read_chunk
    try:
        summary = run_merge(spark, cfg)
    finally:
        staging.read_chunk = original
    table = spark.read.format("delta").load(target)
    assert table.count() == 40 and summary.scored == 36
    assert pairs_scored(pair_log) - before == 36  # once per row, across 5 MERGE commits
    assert summary.extra["commits"] == len(staged_reads) == 5  # 40 rows in chunks of at most 9
    files = [f for _, chunk in staged_reads for f in chunk]
    assert len(files) == len(set(files))  # each chunk read only its own staged files
    assert not list((tmp_path / ".target__clipscore_staging").glob("run_*"))  # staging removed
    # A rerun scores nothing and sends nothing to the model.
    again = pairs_scored(pair_log)
    assert run_merge(spark, cfg).rows == 0 and pairs_scored(pair_log) == again


def test_pack_chunks_keeps_chunks_within_the_row_limit():
    files = [(f"f{i}", n) for i, n in enumerate([3, 3, 3, 5, 1, 9, 2])]
    chunks = staging.pack_chunks(files, 6)
    assert [sum(dict(files)[f] for f in c) for c in chunks] == [6, 3, 6, 9, 2]  # a 9-row file is alone
    assert [f for c in chunks for f in c] == [f for f, _ in files]


def test_add_scores_bounds_arrow_batches_on_the_session(spark, tiny_cfg, pairs_table):
    spark.conf.set(MAX_RECORDS_KEY, "10000")
    spark.conf.unset(MAX_BYTES_KEY)
    try:
        add_scores(spark.read.format("delta").load(pairs_table), tiny_cfg)
        assert spark.conf.get(MAX_RECORDS_KEY) == str(tiny_cfg.max_records_per_batch)
        assert spark.conf.get(MAX_BYTES_KEY) == str(tiny_cfg.max_bytes_per_batch)
        spark.conf.set(MAX_RECORDS_KEY, "16")  # a lower setting of the user's is kept
        add_scores(spark.read.format("delta").load(pairs_table), tiny_cfg)
        assert spark.conf.get(MAX_RECORDS_KEY) == "16"
    finally:
        spark.conf.unset(MAX_RECORDS_KEY)
        spark.conf.unset(MAX_BYTES_KEY)


def test_drop_columns_keeps_large_inputs_out_of_the_output(spark, tiny_cfg, pairs_table, tmp_path):
    out = str(tmp_path / "lean")
    run_score(spark, tiny_cfg.replace(input=pairs_table, output=out, drop_columns=("image",)))
    written = spark.read.format("delta").load(out)
    assert "image" not in written.columns and {"id", "caption", "extra", "similarity"} <= set(written.columns)
    assert written.filter(F.col("similarity").isNotNull()).count() == 36
    with pytest.raises(ConfigError, match="not in the input"):
        add_scores(spark.read.format("delta").load(pairs_table), tiny_cfg.replace(drop_columns=("nope",)))


def test_score_pandas_is_bounded_by_batch_size(tiny_cfg, odd_images, monkeypatch):
    from clipscore.scoring.scorer import PairScorer, score_pandas

    seen = []
    original = PairScorer.prepare

    def spy(self, images, captions):
        seen.append(len(images))
        return original(self, images, captions)

    monkeypatch.setattr(PairScorer, "prepare", spy)
    df = pd.DataFrame({"image": [odd_images["png"]] * 10, "caption": ["a cat"] * 10})
    out = score_pandas(df, tiny_cfg.replace(batch_size=4, max_records_per_batch=1024))
    assert len(out) == 10 and out["similarity"].notna().all()
    assert seen == [4, 4, 2]
