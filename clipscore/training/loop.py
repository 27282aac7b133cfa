"""One training process: symmetric InfoNCE with a learned temperature, checkpoints, resume, validation.

``train_worker`` is what ``TorchDistributor`` runs in every process (``torchrun`` sets RANK,
WORLD_SIZE and the rendezvous); called directly it is a single process. Each process reads its shard
of the staging table, embeds its batch, and the loss runs over the batch gathered from every process
(``torch.distributed.nn.all_gather`` keeps the gradient), as CLIP trains: logits =
exp(logit_scale) * image . text over the global batch, cross-entropy both ways, averaged;
``logit_scale`` is learned and clamped at ln(100). DDP averages the gradients.

Checkpoints (``<work_dir>/checkpoint``: weights as safetensors, optimiser and schedule state loaded
with ``weights_only=True``, progress as JSON) are written every ``checkpoint_every`` steps and at each
epoch's end; a restarted run continues from the last one with the same batches (the order is a
function of seed and epoch), so a killed run resumes instead of starting over.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from clipscore.models.preprocess import CaptionTokenizer, ImagePreprocessor
from clipscore.training.data import epoch_batches, read_split
from clipscore.training.metrics import recall_at_k, roc_auc, swapped_pairs
from clipscore.training.options import TrainOptions

log = logging.getLogger(__name__)

MAX_LOGIT_SCALE = math.log(100.0)


def is_config_only(init: str) -> bool:
    """A local folder without weights: train from its config. Anything else (weights, a hub id) fine-tunes."""
    local = Path(init).expanduser()
    return local.is_dir() and not any(local.glob("*.safetensors"))


def load_trainable(init: str, seed: int):
    """(CLIPModel, CLIPProcessor) from ``init``: its weights when it has them, else its config, seeded."""
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor

    processor = CLIPProcessor.from_pretrained(init)
    if not is_config_only(init):
        model = CLIPModel.from_pretrained(init, use_safetensors=True)
    else:
        torch.manual_seed(seed)
        model = CLIPModel(CLIPConfig.from_pretrained(init))
    return model, processor


def contrastive_loss(image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over unit-length embeddings of the (global) batch: pair i is row i."""
    logits = logit_scale.exp() * image_embeds @ text_embeds.T
    target = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


class _Run:
    """The state of one training process."""

    def __init__(self, options: TrainOptions, staging: str, work_dir: str):
        self.options = options
        self.staging = staging
        self.checkpoint = Path(work_dir) / "checkpoint"
        self.rank = int(os.environ.get("RANK", "0"))
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device(f"cuda:{local_rank}" if options.use_gpu else "cpu")
        if options.use_gpu:
            torch.cuda.set_device(self.device)
        threads = options.torch_threads or max(1, (os.cpu_count() or 1) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
        torch.set_num_threads(threads)
        if self.world > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group("nccl" if options.use_gpu else "gloo")

    # ------------------------------------------------------------------------------------------
    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return tensor
        from torch.distributed.nn.functional import all_gather

        return torch.cat(all_gather(tensor))

    def all_min(self, value: int) -> int:
        if self.world == 1:
            return value
        import torch.distributed as dist

        t = torch.tensor([value], device=self.device if self.options.use_gpu else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return int(t.item())

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


def _parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """CLIP's convention: no weight decay on biases, norms, embeddings and the temperature."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.ndim < 2 or "embedding" in name or "logit_scale" in name or "norm" in name:
            no_decay.append(param)
        else:
            decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _schedule(optimizer, total_steps: int, warmup_fraction: float):
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@torch.no_grad()
def evaluate(model, preprocess, tokenize, pixels: torch.Tensor, captions: list[str], batch_size: int,
             device: torch.device, seed: int = 0) -> dict[str, float]:
    """Validation: loss, recall@1/@5 both ways, and ROC AUC of true captions against swapped ones."""
    if len(captions) < 2:
        return {}
    model.eval()
    images, texts = [], []
    for start in range(0, len(captions), batch_size):
        chunk = preprocess.finish(pixels[start : start + batch_size], device)
        image = model.visual_projection(model.vision_model(pixel_values=chunk).pooler_output)
        images.append(F.normalize(image.float(), dim=-1).cpu())
        tokens = {k: v.to(device) for k, v in tokenize(captions[start : start + batch_size]).items()}
        text = model.text_projection(model.text_model(**tokens).pooler_output)
        texts.append(F.normalize(text.float(), dim=-1).cpu())
    image_embeds, text_embeds = torch.cat(images), torch.cat(texts)
    swapped = swapped_pairs(captions, seed)
    true_cos = (image_embeds * text_embeds).sum(-1)
    swapped_cos = (image_embeds * text_embeds[swapped]).sum(-1)
    losses = [float(contrastive_loss(image_embeds[s : s + batch_size], text_embeds[s : s + batch_size],
                                     model.logit_scale.detach().cpu()))
              for s in range(0, len(captions) - 1, batch_size) if len(captions[s : s + batch_size]) > 1]
    model.train()
    return {"loss": sum(losses) / len(losses), **recall_at_k(image_embeds, text_embeds),
            "auc_true_vs_swapped": roc_auc(true_cos, swapped_cos),
            "mean_cos_true": float(true_cos.mean()), "mean_cos_swapped": float(swapped_cos.mean()),
            "pairs": len(captions), "chance_recall@1": 1 / len(captions)}


def _save_checkpoint(run: _Run, model, optimizer, scheduler, progress: dict) -> None:
    """Rank 0 writes weights, optimiser state and progress into a fresh folder, then swaps it in."""
    if run.rank != 0:
        return
    from safetensors.torch import save_file

    tmp = run.checkpoint.with_name("checkpoint.tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optimizer.pt")
    (tmp / "progress.json").write_text(json.dumps(progress, indent=1))
    old = run.checkpoint.with_name("checkpoint.old")
    if run.checkpoint.exists():
        run.checkpoint.rename(old)
    tmp.rename(run.checkpoint)
    if old.exists():
        for f in old.iterdir():
            f.unlink()
        old.rmdir()


def _load_checkpoint(run: _Run, model, optimizer, scheduler) -> dict | None:
    folder = run.checkpoint
    if not (folder / "progress.json").is_file():
        old = folder.with_name("checkpoint.old")  # killed between the two renames
        folder = old if (old / "progress.json").is_file() else None
    if folder is None:
        return None
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    state = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return json.loads((folder / "progress.json").read_text())


def train_worker(options: dict, staging: str, work_dir: str) -> dict[str, Any]:
    """Train in this process (one of ``WORLD_SIZE``); rank 0 returns the history and writes checkpoints."""
    from torch.nn.parallel import DistributedDataParallel


    opts = TrainOptions(**options)
    run = _Run(opts, staging, work_dir)
    model, processor = load_trainable(opts.init, opts.seed)
    model.to(run.device).train()
    preprocess = ImagePreprocessor(processor.image_processor)
    tokenize = CaptionTokenizer(processor.tokenizer, int(model.config.text_config.max_position_embeddings),
                                padding="longest")
    pixels, captions = read_split(staging, "train", run.rank, run.world)
    steps_per_epoch = run.all_min(len(captions)) // opts.batch_size
    if steps_per_epoch < 1:
        raise RuntimeError(f"too few training rows for batch_size={opts.batch_size} per process x {run.world} "
                           f"processes; lower batch_size or add rows")
    total_steps = steps_per_epoch * opts.epochs
    optimizer = torch.optim.AdamW(_parameter_groups(model, opts.weight_decay), lr=opts.lr, betas=(0.9, 0.98), eps=1e-6)
    scheduler = _schedule(optimizer, total_steps, opts.warmup_fraction)
    progress = _load_checkpoint(run, model, optimizer, scheduler) or {
        "epoch": 0, "step_in_epoch": 0, "global_step": 0, "history": [], "resumed_from": [], "train_seconds": 0.0}
    if progress["global_step"]:
        progress["resumed_from"].append(progress["global_step"])
        if run.rank == 0:
            log.info("resuming from checkpoint at step %d (epoch %d)", progress["global_step"], progress["epoch"] + 1)
    ddp = DistributedDataParallel(model) if run.world > 1 else model
    val = read_split(staging, "val") if run.rank == 0 else None

    for epoch in range(progress["epoch"], opts.epochs):
        batches = epoch_batches(len(captions), opts.batch_size, steps_per_epoch, opts.seed, epoch)
        bar = _progress_bar(run, steps_per_epoch, progress["step_in_epoch"], f"epoch {epoch + 1}/{opts.epochs}")
        losses = []
        started = time.perf_counter()
        for step in range(progress["step_in_epoch"], steps_per_epoch):
            rows = batches[step]
            tokens = tokenize([captions[i] for i in rows.tolist()])
            out = ddp(pixel_values=preprocess.finish(pixels[rows], run.device),
                      **{k: v.to(run.device) for k, v in tokens.items()})
            loss = contrastive_loss(run.gather(out.image_embeds), run.gather(out.text_embeds), model.logit_scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), opts.max_grad_norm)
            optimizer.step()
            scheduler.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
            losses.append(loss.item())
            progress.update(step_in_epoch=step + 1, global_step=progress["global_step"] + 1)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.3f}", temp=f"{1 / float(model.logit_scale.exp()):.3f}")
            if progress["global_step"] % opts.checkpoint_every == 0 and step + 1 < steps_per_epoch:
                progress["train_seconds"] += time.perf_counter() - started
                started = time.perf_counter()
                _save_checkpoint(run, model, optimizer, scheduler, progress)
        if bar is not None:
            bar.close()
        progress["train_seconds"] += time.perf_counter() - started
        record = {"epoch": epoch + 1, "train_loss": sum(losses) / len(losses) if losses else None,
                  "logit_scale": float(model.logit_scale.exp())}
        if run.rank == 0 and val is not None:
            record["val"] = evaluate(model, preprocess, tokenize, *val, opts.batch_size, run.device, opts.seed)
            log.info("epoch %d/%d: train loss %.4f, val %s", epoch + 1, opts.epochs, record["train_loss"] or float("nan"),
                     {k: round(v, 4) for k, v in record["val"].items() if isinstance(v, float)})
        progress["history"].append(record)
        progress.update(epoch=epoch + 1, step_in_epoch=0)
        _save_checkpoint(run, model, optimizer, scheduler, progress)
        run.barrier()
    result = {**progress, "steps_per_epoch": steps_per_epoch, "world_size": run.world,
              "train_rows": run.all_min(len(captions)) * run.world}
    if run.rank == 0:
        (Path(work_dir) / "result.json").write_text(json.dumps(result, indent=1))
    if run.world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    return result


def _progress_bar(run: _Run, total: int, done: int, label: str):
    if run.rank != 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc=label, unit="step", dynamic_ncols=True, mininterval=1.0)
