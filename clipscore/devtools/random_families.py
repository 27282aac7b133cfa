"""Build tiny, randomly initialised SigLIP, SigLIP 2 and open_clip models into a folder, offline.

Companions of ``clipscore.devtools.random_model`` (CLIP) for the other model families: each builder writes a
folder in the layout its own library loads (``save_pretrained`` for transformers, ``open_clip_config.json``
plus safetensors for open_clip), so tests exercise the real loading path without any download. The
tokenizers are real SentencePiece models trained here on a small generated caption corpus. Weights
are random (``torch.manual_seed(seed)``): scores are meaningless but reproducible.

    python -m clipscore.devtools.random_families siglip --out /tmp/tiny-siglip [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TEXT_LENGTH = 16  # text max_position_embeddings of the SigLIP models: their fixed padding length
OPEN_CLIP_TINY_ARCH = "clipscore-tiny-ViT-p8"
_OPEN_CLIP_TINY_CFG: dict[str, Any] = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
_TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
# SigLIP base's widths and depths (both towers 768 wide: SigLIP has no projection) on CLIP ViT-B/32's
# image grid (224 px, patch 32) and SigLIP's 64 text positions: for speed comparisons at CLIP B/32's size.
_BASE_B32 = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
SIGLIP_SIZES = {"tiny": (_TINY, 8, TEXT_LENGTH), "base-b32": (_BASE_B32, 32, 64)}

_WORDS = {
    "subject": "dog cat horse bird child woman man car boat train tree house flower bicycle cow sheep plane bus "
               "girl boy elephant giraffe zebra bear pizza sandwich guitar laptop umbrella kite skateboard surfer "
               "chef farmer teacher student player musician painter fisherman tiger lion rabbit squirrel butterfly "
               "mountain lighthouse bridge castle church tower motorcycle truck tractor helicopter balloon penguin "
               "dolphin monkey fox wolf owl duck goose turtle frog snake parrot camel donkey puppy kitten baby "
               "grandmother soldier nurse doctor pilot runner swimmer climber baker waiter tourist couple robot",
    "adjective": "red small big old young happy brown white black green blue tall wet sleepy shiny yellow orange "
                 "purple golden silver wooden frozen dusty muddy colorful striped spotted fluffy tiny huge ancient "
                 "modern quiet noisy bright dark cheerful lonely curious elegant rusty broken empty crowded narrow "
                 "wide gentle fierce hungry thirsty clever famous strange beautiful ugly",
    "action": "sitting on|running across|standing near|lying in|jumping over|walking along|parked by|flying above|"
              "looking at|playing in|resting under|waiting beside|swimming in|climbing up|hiding behind|"
              "sleeping on|driving through|floating on|dancing in|reading near|eating lunch in|"
              "carrying bags through|painting a picture of|singing songs in|holding a cup near|"
              "throwing a ball across|chasing pigeons in|taking photographs of|riding slowly past|cooking dinner in",
    "place": "the grass|a beach|the street|a field|the snow|a river|the kitchen|a park|the road|a forest|the city|"
             "a table|the harbor|a meadow|the desert|a garden|the station|a market|the lake|a stadium|the library|"
             "a hill|the countryside|a playground|the museum|an airport|the village|a bakery|the office|"
             "a classroom|the bathroom|a bedroom|the balcony|a rooftop|the subway|a highway|the jungle|an island",
    "time": "at sunset|in the morning|at night|during winter|on a rainy day|under a cloudy sky|in summer|at dawn|"
            "in the afternoon|on a sunny day|in autumn|during spring|after midnight|before breakfast|on weekends",
}


def caption_corpus(n: int = 800) -> list[str]:
    """``n`` distinct, deterministic, lower-case English captions (the tokenizers' training text)."""
    words = {k: v.split("|") if "|" in v else v.split() for k, v in _WORDS.items()}
    counts = "two three four five six seven eight nine ten".split()

    def pick(kind: str, i: int, step: int) -> str:  # a stride per slot: varied, deterministic
        return words[kind][(step * i + i // step) % len(words[kind])]

    lines = []
    for i in range(n):
        subject, count = pick("subject", i, 3), "a"
        if i % 3 == 0:  # plurals, so the vocabulary also learns suffixes
            subject, count = subject + ("es" if subject.endswith(("s", "x", "ch", "sh")) else "s"), counts[i % 9]
        opening = ("a photo of", "an image of", "there is", "close up of")[i % 4]
        lines.append(f"{opening} {count} {pick('adjective', i, 7)} {subject} {pick('action', i, 5)} "
                     f"{pick('place', i, 11)} {pick('time', i, 13)}")
    return lines


def _train_sentencepiece(path: Path, **options: Any) -> int:
    """Train a SentencePiece model on :func:`caption_corpus`, write it to ``path``; return its vocab size."""
    import sentencepiece as spm

    with open(path, "wb") as model_file:
        spm.SentencePieceTrainer.train(sentence_iterator=iter(caption_corpus()), model_writer=model_file,
                                       num_threads=1, minloglevel=2, **options)  # one thread: deterministic
    return spm.SentencePieceProcessor(model_file=str(path)).get_piece_size()


def _set_logits(model: Any, logit_bias: float = -10.0) -> None:
    """SigLIP's own initial temperature and bias (log 10, -10); transformers' init leaves both zero.
    Another bias (e.g. 0) puts random models' probabilities mid-range, where a test of them bites."""
    import torch

    with torch.no_grad():
        model.logit_scale.fill_(math.log(10.0))
        model.logit_bias.fill_(logit_bias)


def _save_random(out: Path, model_class: Any, config: Any, processor: Any, seed: int, label: str,
                 logit_bias: float = -10.0) -> Path:
    """A seeded random model of ``config`` with SigLIP's logit scale and bias, saved with its processor."""
    import torch

    torch.manual_seed(seed)
    model = model_class(config).eval()
    _set_logits(model, logit_bias)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    log.info("wrote random tiny %s to %s", label, out)
    return out


def build_random_siglip(out: str | Path, seed: int = 0, image_size: int = 32, logit_bias: float = -10.0,
                        size: str = "tiny") -> Path:
    """Write a tiny random ``SiglipModel`` with a ``SiglipProcessor`` to ``out``.

    ``size="base-b32"`` (with ``image_size=224``): SigLIP base's towers on a patch-32 grid and 64 text
    positions, the size of CLIP ViT-B/32, for benchmarks (the tokenizer stays the small trained one).

    The tokenizer is a ``SiglipTokenizer`` over a trained unigram SentencePiece model with SigLIP's ids
    (``<pad>`` 0, ``</s>`` 1 = eos = the pad token it pads with, ``<unk>`` 2, no bos). Like the released
    checkpoints loaded by transformers 5, it returns an ``attention_mask`` too, which SigLIP never saw
    in training: the scorer must not pass it on (``clipscore.models.siglip``).
    Load it back with ``SiglipModel.from_pretrained(out)`` and ``SiglipProcessor.from_pretrained(out)``
    (or ``AutoModel``/``AutoProcessor``).
    """
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor, SiglipTokenizer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vocab_size = _train_sentencepiece(out / "spiece.model", model_type="unigram", vocab_size=300, pad_id=0,
                                      eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>", eos_piece="</s>",
                                      unk_piece="<unk>")
    dims, patch, length = SIGLIP_SIZES[size]
    tokenizer = SiglipTokenizer(str(out / "spiece.model"), model_max_length=length)
    image_processor = SiglipImageProcessor(size={"height": image_size, "width": image_size},
                                           image_mean=[0.5] * 3, image_std=[0.5] * 3)
    config = SiglipConfig(
        text_config=dict(dims, vocab_size=vocab_size, max_position_embeddings=length, pad_token_id=1,
                         eos_token_id=1, bos_token_id=None),
        vision_config=dict(dims, image_size=image_size, patch_size=patch),
    )
    return _save_random(out, SiglipModel, config, SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer),
                        seed, "SigLIP", logit_bias)


def _gemma_tokenizer(out: Path) -> Any:
    """A ``GemmaTokenizer`` as SigLIP 2 ships it, over a BPE SentencePiece model trained here (see below)."""
    from transformers import GemmaTokenizer

    _train_sentencepiece(out / "tokenizer.model", model_type="bpe", vocab_size=512, pad_id=0,
                         eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>",
                         bos_piece="<bos>", unk_piece="<unk>", control_symbols=["<mask>"],
                         byte_fallback=True, add_dummy_prefix=False, split_digits=True)
    converted = GemmaTokenizer.convert_to_native_format(vocab_file=str(out / "tokenizer.model"))
    converted.pop("vocab_file")  # else tokenizer_config.json records this build's path
    return GemmaTokenizer(**converted, add_bos_token=False, add_eos_token=True, padding_side="right",
                          model_max_length=TEXT_LENGTH, max_length=TEXT_LENGTH)


def build_random_siglip2_fixed(out: str | Path, seed: int = 0, image_size: int = 32, logit_bias: float = -10.0) -> Path:
    """Write a tiny random SigLIP 2 fixed-resolution model: ``SiglipModel`` with a Gemma tokenizer.

    That is how google/siglip2-*-patch16-224 (and every fixed-resolution SigLIP 2) ships: transformers
    reads it as ``siglip``, but its text side is SigLIP 2's (Gemma vocabulary, lower-cased training text).
    """
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _gemma_tokenizer(out)
    image_processor = SiglipImageProcessor(size={"height": image_size, "width": image_size},
                                           image_mean=[0.5] * 3, image_std=[0.5] * 3)
    config = SiglipConfig(
        text_config=dict(_TINY, vocab_size=len(tokenizer), max_position_embeddings=TEXT_LENGTH, pad_token_id=0,
                         eos_token_id=1, bos_token_id=2),
        vision_config=dict(_TINY, image_size=image_size, patch_size=8),
    )
    return _save_random(out, SiglipModel, config, SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer),
                        seed, "SigLIP 2 (fixed resolution)", logit_bias)


def build_random_siglip2(out: str | Path, seed: int = 0, logit_bias: float = -10.0) -> Path:
    """Write a tiny random NaFlex ``Siglip2Model`` with a ``Siglip2Processor`` to ``out``.

    The tokenizer is a ``GemmaTokenizer``, as in the released SigLIP 2 checkpoints, converted by
    transformers from a BPE SentencePiece model trained here with Gemma's layout (``<pad>`` 0,
    ``<eos>`` 1, ``<bos>`` 2, ``<unk>`` 3, ``<mask>`` 4, byte fallback, no dummy prefix); it adds
    ``<eos>``, no ``<bos>``, pads on the right, and defaults to ``max_length`` 16 so that the
    processor's own default (64, longer than the model's positions) does not apply.
    Patches are 16 pixels and at most 256 per image, the real defaults: ``Siglip2Processor`` passes
    its defaults (patch 16, 256 patches) to the image processor over the image processor's own
    settings, so any other patching would break ``processor(images=...)``.
    Load it back with ``Siglip2Model.from_pretrained(out)`` and ``Siglip2Processor.from_pretrained(out)``
    (or ``AutoModel``/``AutoProcessor``).
    """
    from transformers import Siglip2Config, Siglip2ImageProcessor, Siglip2Model, Siglip2Processor

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _gemma_tokenizer(out)
    vocab_size = len(tokenizer)
    image_processor = Siglip2ImageProcessor(patch_size=16, max_num_patches=256)
    config = Siglip2Config(
        text_config=dict(_TINY, vocab_size=vocab_size, max_position_embeddings=TEXT_LENGTH, pad_token_id=0,
                         eos_token_id=1, bos_token_id=2),
        vision_config=dict(_TINY, patch_size=16, num_patches=256),
    )
    return _save_random(out, Siglip2Model, config,
                        Siglip2Processor(image_processor=image_processor, tokenizer=tokenizer), seed, "SigLIP 2", logit_bias)


def register_tiny_open_clip_arch(folder: str | Path) -> str:
    """Add :data:`OPEN_CLIP_TINY_ARCH` to open_clip's model registry; return its name.

    Writes ``<folder>/<OPEN_CLIP_TINY_ARCH>.json`` and passes it to ``open_clip.add_model_config``. The
    registry lives in the process, so call this in each process that names the architecture.
    """
    import open_clip

    path = Path(folder) / f"{OPEN_CLIP_TINY_ARCH}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_OPEN_CLIP_TINY_CFG, indent=2), encoding="utf-8")
    if OPEN_CLIP_TINY_ARCH not in open_clip.list_models():
        open_clip.add_model_config(path)
    return OPEN_CLIP_TINY_ARCH


def build_random_open_clip(out: str | Path, seed: int = 0) -> Path:
    """Write a tiny random open_clip ``CLIP`` (ViT, patch 8, 32 px; OpenAI BPE tokenizer) to ``out``.

    Layout, as open_clip's Hub exports: ``open_clip_config.json`` (``model_cfg``, ``preprocess_cfg``) and
    ``open_clip_model.safetensors``, plus ``<OPEN_CLIP_TINY_ARCH>.json`` for the registry. Load it back::

        model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{out}")
        tokenizer = open_clip.get_tokenizer(f"local-dir:{out}")

    or by architecture name, after ``register_tiny_open_clip_arch(out)`` in the same process::

        open_clip.create_model_and_transforms(OPEN_CLIP_TINY_ARCH, pretrained=f"{out}/open_clip_model.safetensors")
        open_clip.get_tokenizer(OPEN_CLIP_TINY_ARCH)
    """
    import open_clip
    import torch
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from safetensors.torch import save_file

    out = Path(out)
    arch = register_tiny_open_clip_arch(out)
    torch.manual_seed(seed)
    model = open_clip.create_model(arch).eval()
    preprocess_cfg = {"mean": list(OPENAI_DATASET_MEAN), "std": list(OPENAI_DATASET_STD),
                      "interpolation": "bicubic", "resize_mode": "shortest"}
    config = {"model_cfg": _OPEN_CLIP_TINY_CFG, "preprocess_cfg": preprocess_cfg}
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "open_clip_model.safetensors"))
    log.info("wrote random tiny open_clip %s to %s", arch, out)
    return out


BUILDERS = {"siglip": build_random_siglip, "siglip2": build_random_siglip2, "siglip2_fixed": build_random_siglip2_fixed,
            "open_clip": build_random_open_clip}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("family", choices=sorted(BUILDERS))
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(message)s")  # root stays at WARNING: open_clip logs its steps at INFO there
    log.setLevel(logging.INFO)
    BUILDERS[args.family](args.out, seed=args.seed)


if __name__ == "__main__":
    main()
