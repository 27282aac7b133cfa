"""Build randomly initialised CLIP folders of a real or a tiny architecture, offline.

Used by the demo, the benchmarks and the tests on machines without pretrained weights. The folder is
a normal ``save_pretrained`` output (config.json, model.safetensors, processor and tokenizer files),
so it exercises exactly the loading path that real models take. Scores from random weights are
meaningless; speed and numerical equivalence do not depend on the weights' values.

    python -m clipscore.devtools.random_model --config ../shared/models/clip-vit-b-32-config --out out/models/b32
    python -m clipscore.devtools.random_model --tiny --out /tmp/tiny-clip
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

_SPECIAL = ("<|startoftext|>", "<|endoftext|>")


def _byte_level_vocab() -> dict[str, int]:
    """A byte-level BPE vocabulary with no merges: every byte, alone and word-final, plus specials.

    It tokenises any text (one token per byte), which is all a tiny test model needs; the end-of-text
    token gets the highest id, as in the real CLIP vocabulary, so pooling picks it the same way.
    """
    # The GPT-2/CLIP byte-to-printable-character table: printable bytes map to themselves, the
    # rest to code points from 256 up, in byte order.
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1),
                 *range(ord("\u00ae"), ord("\u00ff") + 1)]
    extra = iter(range(256, 512))
    chars = [chr(b) if b in printable else chr(next(extra)) for b in range(256)]
    tokens = chars + [c + "</w>" for c in chars] + list(_SPECIAL)
    return {token: i for i, token in enumerate(tokens)}


def write_tiny_tokenizer(folder: Path) -> int:
    vocab = _byte_level_vocab()
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return len(vocab)


def tiny_config(vocab_size: int, image_size: int = 32, seed_dims: int = 32):
    from transformers import CLIPConfig

    text = dict(
        vocab_size=vocab_size, hidden_size=seed_dims, intermediate_size=2 * seed_dims, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, projection_dim=16,
        bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
    )
    vision = dict(
        hidden_size=seed_dims, intermediate_size=2 * seed_dims, num_hidden_layers=2, num_attention_heads=2,
        image_size=image_size, patch_size=8, projection_dim=16,
    )
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)


def build_random_clip(out: str | Path, config_dir: str | Path | None = None, tiny: bool = False,
                      seed: int = 0, image_size: int = 32, vit_b32: bool = False) -> Path:
    """Write a random-weight CLIP to ``out``: the architecture of ``config_dir``, or a tiny one.

    ``vit_b32``: the ViT-B/32 image tower and preprocessing (transformers' ``CLIPConfig`` and
    ``CLIPImageProcessor`` defaults are OpenAI's ViT-B/32) with the tiny byte-level tokenizer, for
    tests that need the real image path without any downloaded file.
    """
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if vit_b32:
        vocab_size = write_tiny_tokenizer(out)
        config = CLIPConfig(text_config=dict(vocab_size=vocab_size, bos_token_id=vocab_size - 2,
                                             eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1))
        tokenizer = CLIPTokenizer(str(out / "vocab.json"), str(out / "merges.txt"))
        processor = CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tokenizer)
    elif tiny:
        vocab_size = write_tiny_tokenizer(out)
        config = tiny_config(vocab_size, image_size=image_size)
        tokenizer = CLIPTokenizer(str(out / "vocab.json"), str(out / "merges.txt"))
        image_processor = CLIPImageProcessor(
            size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
        )
        processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    else:
        if config_dir is None:
            raise ValueError("pass config_dir (a folder with config.json and tokenizer files) or tiny=True")
        config = CLIPConfig.from_pretrained(config_dir)
        processor = CLIPProcessor.from_pretrained(config_dir)
    model = CLIPModel(config).eval()
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    log.info("wrote random CLIP (%s) to %s", "tiny" if tiny else config_dir, out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--config", help="folder with a CLIP config.json and tokenizer files")
    group.add_argument("--tiny", action="store_true", help="a tiny architecture (tests)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build_random_clip(args.out, config_dir=args.config, tiny=args.tiny, seed=args.seed)


if __name__ == "__main__":
    main()
