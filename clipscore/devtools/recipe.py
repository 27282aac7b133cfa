"""The recipe for the small CLIP we ship: an untrained config folder for the synthetic shapes data.

    python -m clipscore.devtools.recipe --out out/train/init      # config + processor + tokenizer, no weights
    python -m clipscore.devtools.synthetic table --out out/train/shapes.parquet --n 24000 --seed 1
    clipscore train --input out/train/shapes.parquet --init out/train/init --output models/clipscore-shapes \\
        --epochs 8 --batch-size 128 --lr 1e-3

The model is a CLIP of the standard architecture, shrunk: a ViT on 64x64 images (8x8 patches),
a text tower over the synthetic captions' word-level vocabulary (``clipscore.devtools.synthetic``'s
tokenizer, CLIP BPE format), 96 wide, 3 layers each (0.8 M parameters, 3 MB). ``CLIPModel``/``CLIPProcessor`` load it
like any CLIP, so ``clipscore score --model DIR`` scores with it as it is.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from clipscore.devtools.synthetic import write_tokenizer
IMAGE_SIZE = 64


def write_init(out: str | Path, image_size: int = IMAGE_SIZE, width: int = 96, layers: int = 3,
               projection: int = 64, patch: int = 8) -> Path:
    """Write config.json, the image processor config and the tokenizer files (no weights) to ``out``."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPProcessor, CLIPTokenizer


    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vocab_size = write_tokenizer(out)
    tokenizer = CLIPTokenizer.from_pretrained(out)
    text = dict(vocab_size=vocab_size, hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers,
                num_attention_heads=4, max_position_embeddings=32, projection_dim=projection,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)
    vision = dict(hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers, num_attention_heads=4,
                  image_size=image_size, patch_size=patch, projection_dim=projection)
    CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection).save_pretrained(out)
    image_processor = CLIPImageProcessor(size={"shortest_edge": image_size},
                                         crop_size={"height": image_size, "width": image_size})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    print(write_init(args.out))


if __name__ == "__main__":
    main()
