"""Real tar shards for the WebDataset tests: img2dataset's layout (key = shard id + position; .jpg/.txt/.json)."""
from __future__ import annotations

import io
import json
import tarfile

from support.images import encode, photo_like


def write_tar(path, members: list[tuple[str, bytes]], mode: str = "w") -> None:
    with tarfile.open(path, mode) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def img2dataset_members(shard: int, n: int, with_missing: bool = False, size: tuple[int, int] = (32, 24)) -> list:
    """``n`` samples as img2dataset writes them; with ``with_missing`` sample 1 has no image, sample 2 no caption."""
    members = []
    for i in range(n):
        key = f"{shard:05d}{i:04d}"
        meta = {"url": f"https://images.example.invalid/{shard}/{i}.jpg", "caption": f"caption {i}", "key": key,
                "status": "success", "error_message": None, "width": size[0], "height": size[1],
                "original_width": 2 * size[0], "original_height": 2 * size[1], "exif": "{}", "sha256": "ab" * 32}
        if not (with_missing and i == 1):
            members.append((f"{key}.jpg", encode(photo_like(*size, seed=shard * 100 + i), "JPEG")))
        if not (with_missing and i == 2):
            members.append((f"{key}.txt", f"a photo number {i} of shard {shard}".encode()))
        members.append((f"{key}.json", json.dumps(meta).encode()))
    return members
