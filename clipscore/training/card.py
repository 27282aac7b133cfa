"""``TRAINING.md``: what a trained model folder was trained on, how, and how well it separates captions."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def write_card(folder: Path, record: dict[str, Any], model: Any) -> None:
    options, data, history = record["options"], record["data"], record.get("history", [])
    params = sum(p.numel() for p in model.parameters())
    last = history[-1].get("val", {}) if history else {}
    lines = [
        "# Training card",
        "",
        f"Trained with `clipscore train` from `{options['init']}` on `{options['input']}`.",
        "",
        "## Data",
        "",
        f"- training rows: {data['train']:,}; validation rows: {data['val']:,} "
        f"(held out by a hash of image and caption, {options['val_fraction']:.0%})",
        "- skipped rows by reason: " + (", ".join(f"{k} {v:,}" for k, v in sorted(data["skipped"].items())) or "none"),
        "",
        "## Model and optimisation",
        "",
        f"- CLIPModel, {params / 1e6:.2f} M parameters; image {model.config.vision_config.image_size} px, "
        f"patch {model.config.vision_config.patch_size}; text vocabulary {model.config.text_config.vocab_size:,}, "
        f"{model.config.text_config.max_position_embeddings} positions",
        f"- symmetric InfoNCE with a learned temperature (final 1/T = {history[-1]['logit_scale']:.1f})" if history else "",
        f"- {record.get('epoch', options['epochs'])} epochs x {record.get('steps_per_epoch')} steps, batch "
        f"{options['batch_size']} per process x {record.get('world_size', 1)} process(es), AdamW lr {options['lr']}, "
        f"weight decay {options['weight_decay']}, warm-up {options['warmup_fraction']:.0%} then cosine",
        f"- training time {record.get('train_seconds', 0):.0f} s (staging {record.get('stage_seconds', 0):.0f} s)"
        + (f"; resumed from step(s) {record['resumed_from']}" if record.get("resumed_from") else ""),
        "",
        "## Validation per epoch",
        "",
        "| epoch | train loss | val loss | AUC true vs swapped | image→text R@1 | R@5 | text→image R@1 | R@5 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for h in history:
        v = h.get("val", {})
        lines.append(f"| {h['epoch']} | {_f(h.get('train_loss'))} | {_f(v.get('loss'))} | {_f(v.get('auc_true_vs_swapped'))} "
                     f"| {_f(v.get('image_to_text_recall@1'))} | {_f(v.get('image_to_text_recall@5'))} "
                     f"| {_f(v.get('text_to_image_recall@1'))} | {_f(v.get('text_to_image_recall@5'))} |")
    if last:
        lines += ["", f"Recall is instance-level over {last['pairs']:,} validation pairs: chance is "
                      f"{last['chance_recall@1']:.4f} at @1. Mean cosine: true captions {last['mean_cos_true']:.3f}, "
                      f"swapped captions {last['mean_cos_swapped']:.3f}."]
    lines += ["", "## Use", "", "```bash", "clipscore score --input TABLE --output SCORED --model THIS_FOLDER", "```", ""]
    (folder / "TRAINING.md").write_text("\n".join(line for line in lines if line is not None), encoding="utf-8")


def _f(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"
