"""What benchmarks/peer.py holds equal between clipscore and clip-retrieval: the shards, the weights file,
the two command lines, and reading each tool's output back (sample key -> cosine)."""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np

ARCH = "ViT-B-32"


# -------------------------------------------------------------------------------------------------
# Inputs
# -------------------------------------------------------------------------------------------------
def write_shards(df, folder: Path, shards: int) -> str:
    """``df`` (bench_data rows) as ``shards`` tar files laid out as img2dataset writes them: per sample
    ``<key>.jpg``, ``<key>.txt`` and ``<key>.json``, key = 5-digit shard id + 4-digit index. Returns
    the brace pattern both tools are given. Written once per folder (a ``_DONE`` marker)."""
    pattern = str(folder / f"{{00000..{shards - 1:05d}}}.tar")
    if (folder / "_DONE").is_file():
        return pattern
    folder.mkdir(parents=True, exist_ok=True)
    per_shard = -(-len(df) // shards)
    for shard in range(shards):
        part = df.iloc[shard * per_shard:(shard + 1) * per_shard]
        with tarfile.open(folder / f"{shard:05d}.tar", "w") as tar:
            for index, row in enumerate(part.itertuples()):
                key = f"{shard:05d}{index:04d}"
                meta = {"url": f"https://img.example.invalid/{row.id}.jpg", "key": key, "status": "success",
                        "error_message": None, "width": int(row.width), "height": int(row.height),
                        "original_width": int(row.width), "original_height": int(row.height),
                        "exif": "{}", "sha256": hashlib.sha256(row.image).hexdigest(), "caption": row.caption}
                members = (("jpg", row.image), ("txt", row.caption.encode()), ("json", json.dumps(meta).encode()))
                for ext, data in members:
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size, info.mtime = len(data), 0
                    tar.addfile(info, io.BytesIO(data))
    (folder / "_DONE").write_text(json.dumps({"samples": len(df), "shards": shards}))
    return pattern


def make_weights(path: Path, seed: int = 0) -> str:
    """open_clip's own ViT-B-32 with random weights (seeded), saved as safetensors once. Returns its sha256."""
    if not path.is_file():
        import open_clip
        import torch
        from safetensors.torch import save_file

        torch.manual_seed(seed)
        model = open_clip.create_model(ARCH)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))
        os.replace(tmp, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def model_name(weights: Path) -> str:
    """``open_clip:ViT-B-32//abs/path.safetensors``: clipscore's spelling, and all_clip's too (it passes
    everything after the first ``/`` to open_clip as ``pretrained``, which loads an existing file)."""
    return f"open_clip:{ARCH}/{weights.resolve()}"


# -------------------------------------------------------------------------------------------------
# The two command lines
# -------------------------------------------------------------------------------------------------
def ours_command(python: str, pattern: str, out: Path, weights: Path, precision: str, batch_size: int,
                 workers: int) -> list[str]:
    cmd = [python, "-m", "clipscore.jobs.cli", "score", "--input", pattern, "--output", str(out), "--mode", "overwrite",
           "--model", model_name(weights), "--master", f"local[{workers}]"]
    for item in ("device=cpu", f"precision={precision}", f"batch_size={batch_size}", "write_embeddings=true"):
        cmd += ["--set", item]
    return cmd


def peer_command(venv: Path, pattern: str, out: Path, weights: Path, batch_size: int, workers: int) -> list[str]:
    return [str(venv / "bin" / "clip-retrieval"), "inference", "--input_format", "webdataset",
            "--input_dataset", pattern, "--output_folder", str(out), "--batch_size", str(batch_size),
            "--num_prepro_workers", str(workers), "--enable_metadata", "True", "--enable_wandb", "False",
            "--use_jit", "False", "--clip_model", model_name(weights)]


def peer_env(base: dict, venv: Path) -> dict:
    """The peer's environment: its venv first on PATH, no Spark variables of ours, never the network."""
    env = {k: v for k, v in base.items() if not k.startswith(("PYSPARK_", "VIRTUAL_ENV"))}
    env.update(PATH=f"{venv / 'bin'}:{env.get('PATH', '')}", VIRTUAL_ENV=str(venv), HF_HUB_OFFLINE="1",
               WANDB_MODE="disabled", TOKENIZERS_PARALLELISM="false", HF_HUB_DISABLE_TELEMETRY="1")
    return env


# -------------------------------------------------------------------------------------------------
# Outputs, by sample key
# -------------------------------------------------------------------------------------------------
def ours_scores(out: Path) -> dict[str, float]:
    """Our table (Delta: its Parquet files, all live in a fresh folder; ``_delta_log`` skipped)."""
    import pyarrow.dataset as ds

    dataset = ds.dataset(str(out), format="parquet", partitioning="hive")
    df = dataset.to_table(columns=["key", "similarity", "score_error"]).to_pandas()
    bad = df[df.score_error.notna()]
    if len(bad):
        raise RuntimeError(f"ours: {len(bad)} rows not scored, e.g. {bad.score_error.iloc[0]}")
    return dict(zip(df.key, df.similarity.astype(np.float64)))


def peer_scores(out: Path) -> dict[str, float]:
    """The peer's cosines: its float16 unit embeddings (img_emb_*.npy, text_emb_*.npy), row i of each
    belongs to row i of metadata_*.parquet (``image_path`` is the sample's ``__key__``)."""
    import pandas as pd

    keys, cos = [], []
    for meta in sorted((out / "metadata").glob("metadata_*.parquet")):
        part = meta.stem.split("_", 1)[1]
        img = np.load(out / "img_emb" / f"img_emb_{part}.npy").astype(np.float64)
        txt = np.load(out / "text_emb" / f"text_emb_{part}.npy").astype(np.float64)
        df = pd.read_parquet(meta, columns=["image_path"])
        if not len(df) == len(img) == len(txt):
            raise RuntimeError(f"peer output {part}: {len(df)} metadata rows, {len(img)} and {len(txt)} embeddings")
        keys += list(df.image_path)
        cos += list((img * txt).sum(axis=1))
    return dict(zip(keys, cos))


def agreement(ours: dict[str, float], peer: dict[str, float]) -> dict:
    common = sorted(set(ours) & set(peer))
    diff = np.abs(np.array([ours[k] for k in common]) - np.array([peer[k] for k in common]))
    return {"compared": len(common), "only_ours": len(set(ours) - set(peer)), "only_peer": len(set(peer) - set(ours)),
            "max_abs_diff": float(diff.max()) if len(diff) else None,
            "mean_abs_diff": float(diff.mean()) if len(diff) else None}
