"""Search latency, and dedup recall / precision / time, on a 100k-row table of real stored embeddings.

    python benchmarks/retrieval_scale.py [--rows 100000] [--copies 5000] [--threshold 0.97]

The table: ``rows - copies`` generated shape images and ``copies`` planted near-duplicates of some of
them (re-encoded as JPEG, resized to 3/4, cropped by one pixel, in turn), embedded with the shipped
shapes model (``write_embeddings``' float16 cells, with the scorer itself, no Spark), written as
Parquet once and cached in ``--work``. Then, on a local Spark (``local[2]``) with the same session:

* **search**: ``run_search`` for several text queries (the first one also warms up), against the
  baseline a user would otherwise run: every embedding collected to the driver and ranked in numpy.
* **dedup**: ``run_dedup`` (FAISS k-means on a sample, the greedy rule within clusters, the join
  back, the write), against the exact answer on the driver: the same greedy rule over the whole
  table at once (one cluster), and brute force's list of every pair whose cosine clears the
  threshold (numpy blocks). For each: recall = of those near-duplicate pairs, the share resolved
  (at least one of the two marked duplicate; the pairs left among kept rows are counted too);
  precision = of the rows marked duplicate, the share whose cosine with the row they point to
  clears the threshold. Also: of the planted copies within the threshold of their original, the
  share resolved.

Wall seconds, with the load average beside them (the machine is shared); the ratios are taken in the
same run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MODEL = str(REPO / "models" / "clipscore-shapes")
QUERIES = ("a red circle", "two large blue squares at the top", "three small green stars", "a white cross",
           "a photo of a purple diamond on the left")


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def build_table(path: Path, rows: int, copies: int, chunk: int = 5000) -> None:
    from clipscore.config.options import ScoringOptions
    from clipscore.scoring.scorer import PairScorer
    from clipscore.devtools.synthetic import COPY_KINDS, generate, near_copy

    scorer = PairScorer.from_config(ScoringOptions(model=MODEL, device="cpu", write_embeddings=True, batch_size=256))
    rng = np.random.default_rng(0)
    base = rows - copies
    originals = np.sort(rng.choice(base, copies, replace=False))
    frames, kept = [], {}
    started = time.perf_counter()
    for start in range(0, base, chunk):
        df = generate(min(chunk, base - start), seed=1000 + start // chunk)
        df["id"] = [f"r{start + i:07d}" for i in range(len(df))]
        for i in originals[(originals >= start) & (originals < start + len(df))]:
            kept[i] = (df.image.iloc[i - start], df.caption.iloc[i - start])
        scored = scorer.score_frame(df.image, df.caption)
        frames.append(pd.concat([df[["id", "caption"]].reset_index(drop=True),
                                 scored[["similarity", "image_embedding", "text_embedding"]].reset_index(drop=True)],
                                axis=1).assign(planted_of=None))
        print(f"  embedded {start + len(df):,} of {rows:,} rows ({time.perf_counter() - started:.0f} s)", flush=True)
    for start in range(0, copies, chunk):
        part = originals[start:start + chunk]
        images = pd.Series([near_copy(kept[i][0], COPY_KINDS[(start + n) % 3]) for n, i in enumerate(part)], dtype=object)
        captions = pd.Series([kept[i][1] for i in part])
        scored = scorer.score_frame(images, captions)
        frames.append(pd.DataFrame({"id": [f"c{start + n:07d}" for n in range(len(part))], "caption": captions,
                                    "similarity": scored.similarity, "image_embedding": scored.image_embedding,
                                    "text_embedding": scored.text_embedding,
                                    "planted_of": [f"r{i:07d}" for i in part]}))
    scorer.close()
    table = pd.concat(frames, ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(path, row_group_size=10_000)
    print(f"  wrote {path} ({len(table):,} rows) in {time.perf_counter() - started:.0f} s", flush=True)


def near_pairs(matrix: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Brute force: every pair (i < j) whose cosine is at least the threshold (numpy blocks)."""
    sources, targets = [], []
    for start in range(0, len(matrix), 2048):
        block = matrix[start:start + 2048] @ matrix.T
        i, j = np.nonzero(block >= threshold)
        keep = (start + i) < j
        sources.append(start + i[keep])
        targets.append(j[keep])
    return np.concatenate(sources), np.concatenate(targets)


def quality(matrix: np.ndarray, pairs: tuple, kept_by: np.ndarray, threshold: float) -> dict:
    """How a grouping (each row's kept row, by position) treats the near-duplicate pairs."""
    i, j = pairs
    marked = kept_by != np.arange(len(kept_by))
    both_kept = ~marked[i] & ~marked[j]
    cosine = np.einsum("ij,ij->i", matrix[marked], matrix[kept_by[marked]])
    return {"marked_duplicate": int(marked.sum()),
            "recall": float(1 - both_kept.mean()) if len(i) else 1.0,  # pairs resolved: one of the two removed
            "pairs_left_among_kept": int(both_kept.sum()),
            "precision": float((cosine >= threshold - 1e-6).mean()) if marked.any() else 1.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--copies", type=int, default=5_000)
    parser.add_argument("--threshold", type=float, default=0.97)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--cluster-rows", type=int, default=5_000)
    parser.add_argument("--work", default=str(REPO / "out" / "bench"))
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args(argv)

    from clipscore.schema.columns import decode_embedding
    from clipscore.retrieval.dedup import groups_in_cluster
    from clipscore.jobs.dedup import DedupOptions, run_dedup
    from clipscore.jobs.search import SearchOptions, run_search
    from clipscore.jobs.session import local_session
    from clipscore.config.options import ScoringOptions
    from clipscore.scoring.query import embed_query
    from clipscore.retrieval.vectors import decode_matrix, top_k

    table = Path(args.work) / f"retrieval-{args.rows}-{args.copies}.parquet"
    if not table.exists():
        build_table(table, args.rows, args.copies)
    print(f"load average before: {load_avg()}", flush=True)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = local_session("clipscore-retrieval-bench", master="local[2]",
                          extra_conf={"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "8"})
    spark.sparkContext.setLogLevel("ERROR")
    result: dict = {"rows": args.rows, "copies": args.copies, "threshold": args.threshold, "k": args.k,
                    "model": "models/clipscore-shapes (64-d, float16 cells)", "spark": "local[2]"}

    # Search ---------------------------------------------------------------------------------------
    timings, baseline = [], []
    options = ScoringOptions(model=MODEL, device="cpu")
    for n, text in enumerate((QUERIES[0], *QUERIES)):
        t = time.perf_counter()
        found = run_search(spark, SearchOptions(input=str(table), text=text, k=args.k, model=MODEL))
        took = time.perf_counter() - t
        if n:
            timings.append(took)
        t = time.perf_counter()  # the baseline: collect every embedding, rank on the driver
        rows = spark.read.parquet(str(table)).select("id", "image_embedding").toPandas()
        matrix, present = decode_matrix(rows.image_embedding.tolist(), "float16")
        best = top_k(matrix @ embed_query(options, text=text), args.k, present)
        if n:
            baseline.append(time.perf_counter() - t)
        assert set(found.id) == set(rows.id.to_numpy()[best.positions]) or n == 0, "search differs from brute force"
    result["search"] = {"queries": len(QUERIES), "median_s": float(np.median(timings)), "max_s": float(max(timings)),
                        "collect_and_rank_median_s": float(np.median(baseline)),
                        "ratio_collect_over_search": float(np.median(baseline) / np.median(timings)),
                        "load_avg": load_avg()}
    print(json.dumps(result["search"], indent=1), flush=True)

    # Dedup ----------------------------------------------------------------------------------------
    out = Path(args.work) / "retrieval-dedup.parquet"
    t = time.perf_counter()
    summary = run_dedup(spark, DedupOptions(input=str(table), threshold=args.threshold, output=str(out),
                                            output_format="parquet", mode="overwrite", cluster_rows=args.cluster_rows))
    dedup_s = time.perf_counter() - t
    marked = spark.read.parquet(str(out)).select("id", "duplicate_of", "planted_of").toPandas()
    source = pd.read_parquet(table, columns=["id", "image_embedding", "similarity"])
    matrix = np.stack([decode_embedding(c) for c in source.image_embedding])
    scores = source.similarity.to_numpy(np.float64)
    t = time.perf_counter()
    pairs = near_pairs(matrix, args.threshold)
    pairs_s = time.perf_counter() - t
    position = pd.Series(np.arange(len(source)), index=source.id.to_numpy())
    kept_key = marked.set_index("id").duplicate_of.fillna(pd.Series(marked.id.to_numpy(), index=marked.id.to_numpy()))
    kept_by = position.loc[kept_key.loc[source.id].to_numpy()].to_numpy()
    t = time.perf_counter()  # the exact answer: the same greedy rule over the whole table at once
    exact = groups_in_cluster(matrix, source.id.to_numpy(dtype=object), scores, args.threshold)
    exact_s = time.perf_counter() - t
    exact_kept = np.arange(len(source))
    dup = exact[exact.duplicate_of.notna()]
    exact_kept[position.loc[dup.key].to_numpy()] = position.loc[dup.duplicate_of].to_numpy()
    planted = marked[marked.planted_of.notna()]
    copy_at, original_at = position.loc[planted.id].to_numpy(), position.loc[planted.planted_of].to_numpy()
    close = np.einsum("ij,ij->i", matrix[copy_at], matrix[original_at]) >= args.threshold
    resolved = (kept_by[copy_at] != copy_at) | (kept_by[original_at] != original_at)
    result["dedup"] = {"seconds": dedup_s, "exact_on_driver_s": exact_s, "ratio_exact_over_dedup": exact_s / dedup_s,
                       "pair_search_s": pairs_s, "clusters": summary["clusters"], "cluster_rows": args.cluster_rows,
                       "groups": summary["groups"], "near_duplicate_pairs": int(len(pairs[0])),
                       "dedup": quality(matrix, pairs, kept_by, args.threshold),
                       "exact": quality(matrix, pairs, exact_kept, args.threshold),
                       "same_decision_as_exact": float(((kept_by != np.arange(len(source))) ==
                                                        (exact_kept != np.arange(len(source)))).mean()),
                       "planted_copies_within_threshold": int(close.sum()),
                       "planted_copies_resolved": float(resolved[close].mean()) if close.any() else 1.0,
                       "stage_seconds": summary["seconds"], "load_avg": load_avg()}
    print(json.dumps(result["dedup"], indent=1), flush=True)
    spark.stop()
    Path(args.results).mkdir(parents=True, exist_ok=True)
    target = Path(args.results) / f"retrieval-{args.rows // 1000}k-t{args.threshold:g}-c{args.cluster_rows}.json"
    target.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
