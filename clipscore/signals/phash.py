"""The 64-bit DCT perceptual hash of the decoded frame: the ``imagehash`` library's ``phash``, as 16 hex digits.

Computed in the decode thread on the RGB frame the scorer already holds (no second decode). With
``preprocess: exact`` the frame is the full image, and the hash equals ``imagehash.phash`` of the
file opened with Pillow and converted to RGB (tested). With ``preprocess: fast`` the frame was
reduced at decode (JPEG DCT scaling), so a few of the 64 bits may differ from the full-size hash:
0-4 bits (mean 0.5) on the 15 bundled sample photos (tested); up to 12 on synthetic noise images,
whose low frequencies sit near the median. Compare hashes within one mode, with a Hamming radius.
"""
from __future__ import annotations

from typing import Any

from clipscore.config.extras import require

PHASH_COLUMN = "image_phash"


def phash_hex(frame: Any) -> str:
    """A uint8 ``[3, H, W]`` RGB frame (torch) -> imagehash.phash as 16 lower-case hex digits."""
    from PIL import Image

    imagehash = require("imagehash", "signals: [phash]")
    image = Image.fromarray(frame.cpu().permute(1, 2, 0).numpy())
    return str(imagehash.phash(image))
