"""Shared fixtures: a tiny real CLIP, a local Spark with Delta, a loopback HTTP server, test images.

Nothing here touches the internet or needs ../shared: the model is a randomly initialised tiny CLIP
built with transformers and saved with ``save_pretrained`` (safetensors), like a real one.

The tests mirror the package: ``tests/core/`` needs no Spark (``pytest -m "not spark"``, ``make test-core``),
``tests/spark/`` holds the jobs, the UDF adapter and everything that starts Spark; every test there is marked
``spark`` here. Helpers that are not tests live in ``tests/support/`` (``from support.images import encode``).
This is the only conftest.py: two modules named ``conftest`` would clash.
"""
from __future__ import annotations

import io
import os
import sys
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support.images import encode, photo_like, png_bomb
from support.servers import loopback_server

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# -------------------------------------------------------------------------------------------------
# Layout: tests/spark/ is marked ``spark``; tests/core/ never asks for a SparkSession
# -------------------------------------------------------------------------------------------------
TESTS = Path(__file__).resolve().parent
CORE, SPARK = TESTS / "core", TESTS / "spark"


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = Path(str(item.path)).resolve()
        if path.is_relative_to(SPARK):
            item.add_marker(pytest.mark.spark)
        elif path.is_relative_to(CORE) and "spark" in getattr(item, "fixturenames", ()):
            raise pytest.UsageError(f"{item.nodeid} asks for the `spark` fixture: it belongs in tests/spark/, "
                                    "since tests/core/ runs without Spark (pytest -m 'not spark')")


# -------------------------------------------------------------------------------------------------
# Model
# -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    from clipscore.devtools.random_model import build_random_clip

    return str(build_random_clip(tmp_path_factory.mktemp("models") / "tiny-clip", tiny=True, seed=0))


@pytest.fixture(scope="session")
def tiny_cfg(tiny_model_dir):
    from clipscore.config.job import ScoreConfig

    return ScoreConfig(model=tiny_model_dir, device="cpu", precision="fp32", batch_size=4, http_timeout_s=2.0,
                       allow_private_urls=True)  # the test HTTP server is on loopback


@pytest.fixture(scope="session")
def family_dirs(tmp_path_factory) -> dict[str, str]:
    """Tiny random models of the other families, saved as their libraries save them (offline)."""
    from clipscore.devtools.random_families import build_random_open_clip, build_random_siglip, build_random_siglip2

    root = tmp_path_factory.mktemp("families")
    return {
        "siglip": str(build_random_siglip(root / "tiny-siglip", seed=1)),
        "siglip2": str(build_random_siglip2(root / "tiny-siglip2", seed=2)),
        "open_clip": str(build_random_open_clip(root / "tiny-open-clip", seed=3)),
    }


# -------------------------------------------------------------------------------------------------
# Images
# -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def odd_images() -> dict[str, bytes]:
    """Valid but unusual images that must be scored."""
    rgb = photo_like(64, 48, seed=1)
    frames = [photo_like(40, 30, seed=s).convert("P") for s in (2, 3)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    sixteen = Image.fromarray((np.arange(48 * 64).reshape(48, 64) * 20).astype(np.uint16))
    return {
        "jpeg": encode(rgb, "JPEG", quality=90),
        "png": encode(rgb, "PNG"),
        "cmyk_jpeg": encode(rgb.convert("CMYK"), "JPEG"),
        "grayscale": encode(rgb.convert("L"), "PNG"),
        "sixteen_bit": encode(sixteen, "PNG"),
        "palette": encode(rgb.convert("P"), "PNG"),
        "rgba": encode(rgb.convert("RGBA"), "PNG"),
        "animated_gif": gif.getvalue(),
        "one_pixel": encode(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"),
        "very_wide": encode(photo_like(3000, 15, seed=4), "JPEG"),  # aspect 200: the default limit
        "very_large": encode(photo_like(2400, 1800, seed=5), "JPEG", quality=70),
        "webp": encode(rgb, "WEBP"),
    }


@pytest.fixture(scope="session")
def bad_images(odd_images) -> dict[str, tuple[bytes, str]]:
    """Broken image bytes and the error category each must produce."""
    jpeg = odd_images["jpeg"]
    rng = np.random.default_rng(7)
    return {
        "empty": (b"", "image_empty"),
        "random": (rng.integers(0, 256, 2048, dtype=np.uint8).tobytes(), "image_undecodable"),
        "text": (b"this is not an image at all", "image_undecodable"),
        "truncated": (jpeg[: len(jpeg) // 2], "image_truncated"),
        "bomb": (png_bomb(), "image_too_large"),
        "pdf": (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", "image_undecodable"),
    }


# -------------------------------------------------------------------------------------------------
# HTTP on loopback
# -------------------------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, bytes] = {}

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path.startswith("/slow/"):
            time.sleep(float(path.rsplit("/", 1)[1]))
            path = "/img/jpeg"
        if path == "/huge":
            self.send_response(200)
            self.send_header("Content-Length", str(10 * 1024**3))
            self.end_headers()
            self.wfile.write(b"\xff" * 1024)
            return
        if path == "/error500":
            self.send_error(500)
            return
        body = self.routes.get(path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="session")
def http_server(odd_images):
    """Serves /img/<name> for every odd image, /slow/<seconds>, /huge, /error500; anything else is 404."""
    _Handler.routes = {f"/img/{name}": data for name, data in odd_images.items()}
    with loopback_server(_Handler) as url:
        yield url


# -------------------------------------------------------------------------------------------------
# Spark
# -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def model_load_log(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("loads") / "model_loads.tsv"
    path.touch()
    return path


@pytest.fixture(scope="session")
def pair_log(tmp_path_factory) -> Path:
    """Every Spark Python worker appends the number of pairs its model scored, per batch."""
    path = tmp_path_factory.mktemp("pairs") / "pairs.tsv"
    path.touch()
    return path


@pytest.fixture(scope="session")
def spark(tmp_path_factory, model_load_log, pair_log):
    from clipscore.jobs.session import local_session
    from clipscore.models.runtime import LOAD_LOG_ENV
    from clipscore.scoring.scorer import PAIR_LOG_ENV

    warehouse = tmp_path_factory.mktemp("warehouse")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = local_session(
        "clipscore-tests",
        master="local[2]",
        extra_conf={
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.ui.enabled": "false",
            "spark.sql.warehouse.dir": str(warehouse),
            "spark.driver.extraJavaOptions": f"-Dderby.system.home={warehouse}",
            f"spark.executorEnv.{LOAD_LOG_ENV}": str(model_load_log),
            f"spark.executorEnv.{PAIR_LOG_ENV}": str(pair_log),
            "spark.sql.session.timeZone": "UTC",
        },
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
