"""The training job: stage a table's pairs with Spark, train CLIP with TorchDistributor, save a model folder.

    clipscore train --input TABLE --output DIR [--init MODEL_OR_CONFIG] [--epochs N] [--batch-size B] ...

1. **Preflight** (driver): options, the init model's family (CLIP) and processor, the source's columns.
2. **Stage** (Spark): every row is read by the scorer's reader and loaded by the scorer's loader
   (bytes, paths, URLs: the same limits, the same reasons), cropped by the model's own processor
   (uint8, the size the model takes) and written with its caption to ``<work_dir>/staging``
   (Parquet), split into train and validation by a hash of image and caption. Rows that cannot be
   loaded keep their reason there and are counted, never fatal. A rerun with the same input and
   init reuses the staging table.
3. **Train** (``clipscore.training.loop.train_worker``): one process, or ``num_processes`` under
   ``pyspark.ml.torch.distributor.TorchDistributor`` (DDP; gloo on CPU, nccl on GPUs; on the driver
   node with ``local_mode``, else as a barrier stage on the executors). Checkpoints go to
   ``<work_dir>/checkpoint``; a killed run, started again, resumes there.
4. **Save** (driver): the final weights, the processor and tokenizer as a Hugging Face folder
   (safetensors) that ``clipscore score --model DIR`` loads, with ``TRAINING.md`` and
   ``training.json`` (data, steps, loss and validation metrics per epoch). The work dir is removed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Iterator

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from clipscore.config.coerce import ConfigError
from clipscore.config.job import ScoreConfig
from clipscore.schema.errors import first_line
from clipscore.jobs.columns import error_code
from clipscore.jobs.names import col
from clipscore.jobs.tables import read_source, validate_columns
from clipscore.training.data import SUCCESS
from clipscore.training.options import TrainOptions

log = logging.getLogger("clipscore")

STAGED_SCHEMA = "pixels binary, height int, width int, error string"


def source_config(options: TrainOptions) -> ScoreConfig:
    """The scorer's view of the training input: reader options and the loader's limits."""
    return ScoreConfig(input=options.input, input_format=options.input_format, image_col=options.image_col,
                       caption_col=options.caption_col, image_base_path=options.image_base_path, device="cpu")


def work_paths(options: TrainOptions) -> tuple[Path, str]:
    """(the work dir as the training processes open it, the same place as Spark writes it)."""
    work = Path(options.work_dir or options.output.rstrip("/") + ".clipscore-train").expanduser().absolute()
    text = str(work)
    return work, ("dbfs:/" + text[len("/dbfs/"):]) if text.startswith("/dbfs/") else text


def check_init(init: str) -> None:
    """Fail fast unless ``init`` is a CLIP checkpoint, or a CLIP config folder with its processor."""
    from clipscore.models import family_of
    from clipscore.models.hf import check_processor
    from clipscore.training.loop import is_config_only

    if is_config_only(init):  # a config to train from scratch
        try:
            from transformers import AutoConfig, CLIPProcessor

            family = AutoConfig.from_pretrained(init).model_type
            CLIPProcessor.from_pretrained(init)
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"--init '{init}' is neither a saved model nor a usable config folder "
                              f"({type(exc).__name__}: {first_line(exc, 200)}); a config folder needs "
                              "config.json, preprocessor_config.json and the tokenizer files.") from None
    else:
        family = family_of(init)
        check_processor(init, None)
    if family != "clip":
        raise ConfigError(f"--init '{init}' is a {family} model; clipscore train trains CLIP (CLIPModel) checkpoints "
                          "and configs. Fine-tuning SigLIP or open_clip models is not supported yet.")


def stage(spark: SparkSession, options: TrainOptions, staging: str) -> None:
    """Load, validate and crop every row once, with Spark; write the staging table."""
    cfg = source_config(options)
    source = read_source(spark, cfg)
    validate_columns(source, cfg)
    scoring, init, val = cfg.scoring, options.init, options.val_fraction

    def load(batches: Iterator[tuple[pd.Series, pd.Series]]) -> Iterator[pd.DataFrame]:
        from transformers import AutoProcessor

        from clipscore.images.loader import ImageLoader
        from clipscore.models.preprocess import ImagePreprocessor
        from clipscore.scoring.captions import caption_error

        preprocess = ImagePreprocessor(AutoProcessor.from_pretrained(init).image_processor)
        if not preprocess.split or preprocess.output_size() is None:
            raise RuntimeError(f"the image processor of '{init}' does not crop to a fixed size in uint8; clipscore "
                               "train needs a standard CLIP image processor (resize + center crop)")
        loader = ImageLoader(scoring)
        loader.set_target(*preprocess.target_size())
        try:
            for images, captions in batches:
                errors = [caption_error(c) for c in captions]
                loaded = loader.load_many([None if e else ref for ref, e in zip(images, errors)],
                                          reduce=preprocess.one)
                rows = []
                for item, error in zip(loaded, errors):
                    if error is None and item.image is not None:
                        crop = item.image.contiguous()
                        rows.append((crop.numpy().tobytes(), int(crop.shape[1]), int(crop.shape[2]), None))
                    else:
                        rows.append((None, None, None, error or item.error))
                yield pd.DataFrame(rows, columns=["pixels", "height", "width", "error"])
        finally:
            loader.close()

    from pyspark.sql.functions import pandas_udf

    udf = pandas_udf(load, STAGED_SCHEMA).asNondeterministic()
    row_id = F.xxhash64(col(cfg.image_col), col(cfg.caption_col))
    staged = source.select(row_id.alias("row_id"), col(cfg.caption_col).alias("caption"),
                           udf(col(cfg.image_col), col(cfg.caption_col)).alias("_s"))
    split = F.when(F.pmod(F.col("row_id"), F.lit(100_000)) < int(val * 100_000), "val").otherwise("train")
    staged.select("row_id", split.alias("split"), "caption", "_s.pixels", "_s.height", "_s.width", "_s.error") \
        .write.mode("overwrite").parquet(staging)


def staging_counts(spark: SparkSession, staging: str) -> dict:
    rows = (spark.read.parquet(staging)
            .groupBy("split", error_code("error").alias("reason")).count().collect())
    counts = {"train": 0, "val": 0, "skipped": {}}
    for r in rows:
        if r["reason"] is None:
            counts[r["split"]] += r["count"]
        else:
            counts["skipped"][r["reason"]] = counts["skipped"].get(r["reason"], 0) + r["count"]
    return counts


def _fingerprint(options: TrainOptions) -> str:
    keys = ("input", "input_format", "image_col", "caption_col", "image_base_path", "init", "val_fraction")
    return hashlib.sha256(json.dumps({k: getattr(options, k) for k in keys}, sort_keys=True).encode()).hexdigest()[:16]


def run_train(spark: SparkSession, options: TrainOptions) -> dict:
    """Stage, train and save; returns the training record (also written as ``training.json``)."""
    if not options.input or not options.output:
        raise ConfigError("clipscore train needs --input (a table or path) and --output (the model folder to write).")
    if not options.init:
        raise ConfigError("Pass --init: a saved CLIP folder or hub id to fine-tune, or a folder with config.json, "
                          "processor and tokenizer files (no weights) to train from scratch.")
    check_init(options.init)
    output = Path(options.output).expanduser().absolute()
    if (output / "model.safetensors").exists():
        raise ConfigError(f"--output '{output}' already holds a model; choose a new folder.")
    work, spark_work = work_paths(options)
    staging, spark_staging = work / "staging", spark_work.rstrip("/") + "/staging"
    fingerprint = _fingerprint(options)
    marker = work / "staging.json"
    started = time.perf_counter()
    if (staging / SUCCESS).exists() and marker.is_file() and json.loads(marker.read_text()).get("fingerprint") == fingerprint:
        log.info("reusing the staged rows in %s", staging)
    else:
        shutil.rmtree(work / "checkpoint", ignore_errors=True)  # a checkpoint belongs to its staging
        stage(spark, options, spark_staging)
        work.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"fingerprint": fingerprint}))
    counts = staging_counts(spark, spark_staging)
    log.info("staged %d training and %d validation rows; skipped %s", counts["train"], counts["val"],
             counts["skipped"] or "none")
    if counts["val"] < 2:
        raise ConfigError(f"only {counts['val']} validation rows; raise --val-fraction or add rows.")
    stage_seconds = time.perf_counter() - started

    from clipscore.training.loop import train_worker

    if options.num_processes == 1 and options.local_mode:
        result = train_worker(options.to_dict(), str(staging), str(work))
    else:
        from pyspark.ml.torch.distributor import TorchDistributor

        distributor = TorchDistributor(num_processes=options.num_processes, local_mode=options.local_mode,
                                       use_gpu=options.use_gpu)
        result = distributor.run(train_worker, options.to_dict(), str(staging), str(work))
    record = {"options": options.to_dict(), "data": counts, "stage_seconds": round(stage_seconds, 1), **result}
    save_model(options, work, output, record)
    shutil.rmtree(work, ignore_errors=True)
    return record


def save_model(options: TrainOptions, work: Path, output: Path, record: dict) -> None:
    """The final checkpoint as a Hugging Face folder (safetensors), with the processor and the card."""
    from safetensors.torch import load_file

    from clipscore.training.card import write_card
    from clipscore.training.loop import load_trainable

    model, processor = load_trainable(options.init, options.seed)
    model.load_state_dict(load_file(str(work / "checkpoint" / "model.safetensors")))
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output, safe_serialization=True)
    processor.save_pretrained(output)
    (output / "training.json").write_text(json.dumps(record, indent=1))
    write_card(output, record, model)
    log.info("wrote %s", output)


def check_options(options: TrainOptions) -> None:
    """Before any Spark start-up cost: the init model (the CLI and spark-submit run this first)."""
    if options.init:
        check_init(options.init)


def main(argv: list[str] | None = None) -> int:
    """spark-submit entry point: ``jobs/train.py`` takes the flags of ``clipscore train``."""
    from clipscore.jobs.entry import submit

    return submit("train", run_train, argv, check=check_options)


if __name__ == "__main__":
    raise SystemExit(main())
