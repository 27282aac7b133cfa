"""Image loading: every kind of bad input is a row error with a reason; odd valid images decode."""
import numpy as np
import pytest
from PIL import Image

from clipscore.config.job import ScoreConfig
from clipscore.images.frames import open_reference_rgb
from clipscore.images.loader import ImageLoader


@pytest.fixture()
def loader():
    image_loader = ImageLoader(ScoreConfig(http_timeout_s=1.0, http_retries=0, max_image_bytes=1_000_000,
                                           allow_private_urls=True))  # the test server is on loopback
    yield image_loader
    image_loader.close()


def code(result) -> str:
    return result.error.split(":", 1)[0]


@pytest.mark.parametrize("name", ["jpeg", "png", "cmyk_jpeg", "grayscale", "sixteen_bit", "palette", "rgba",
                                  "animated_gif", "one_pixel", "very_wide", "very_large", "webp"])
def test_odd_but_valid_images_decode_to_the_reference_rgb_frame(loader, odd_images, name):
    """preprocess=exact: the frame equals Pillow's ``open().convert("RGB")`` bit for bit, whichever decoder ran."""
    result = loader.load(odd_images[name])
    assert result.error is None, result.error
    reference = open_reference_rgb(odd_images[name])  # first frame, full size: no resizing here
    frame = result.image.permute(1, 2, 0).numpy()
    assert frame.shape == reference.shape
    assert np.array_equal(frame, reference)


@pytest.mark.parametrize("name", ["empty", "random", "text", "truncated", "bomb", "pdf"])
def test_bad_bytes_give_a_reason(loader, bad_images, name):
    data, expected = bad_images[name]
    result = loader.load(data)
    assert result.image is None
    assert code(result) == expected, result.error


def test_bomb_is_rejected_from_the_header_without_decoding(loader, bad_images):
    result = loader.load(bad_images["bomb"][0])
    assert "100000x100000" in result.error or "pixels" in result.error


def test_pixel_limit_is_configurable(odd_images):
    small = ImageLoader(ScoreConfig(max_image_pixels=1000))
    assert code(small.load(odd_images["jpeg"])) == "image_too_large"
    assert small.load(odd_images["one_pixel"]).error is None


def test_null_and_wrong_types(loader):
    assert code(loader.load(None)) == "image_null"
    assert code(loader.load(float("nan"))) == "image_null"
    assert code(loader.load("   ")) == "image_null"
    assert code(loader.load(12345)) == "image_bad_type"


def test_paths(tmp_path, odd_images):
    (tmp_path / "a.png").write_bytes(odd_images["png"])
    (tmp_path / "sub").mkdir()
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "big.jpg").write_bytes(odd_images["very_large"])
    loader = ImageLoader(ScoreConfig(image_base_path=str(tmp_path), max_image_bytes=100_000))
    assert loader.load(str(tmp_path / "a.png")).error is None
    assert loader.load("a.png").error is None  # relative to image_base_path
    assert loader.load(f"file://{tmp_path / 'a.png'}").error is None
    assert code(loader.load("missing.jpg")) == "file_not_found"
    assert code(loader.load("sub")) == "path_is_directory"
    assert code(loader.load("empty.jpg")) == "image_empty"
    assert code(loader.load("big.jpg")) == "image_too_large"


def test_unknown_scheme_without_a_driver_is_a_row_error(loader):
    result = loader.load("nosuchscheme://bucket/key.jpg")
    assert code(result) in ("unsupported_scheme", "file_unreadable"), result.error


def test_urls(loader, http_server, odd_images):
    ok = loader.load(f"{http_server}/img/jpeg")
    assert ok.error is None and tuple(ok.image.shape) == (3, 48, 64)
    assert code(loader.load(f"{http_server}/img/missing")) == "url_http_error"
    assert "HTTP 404" in loader.load(f"{http_server}/img/missing").error
    assert code(loader.load(f"{http_server}/error500")) == "url_server_error"
    assert code(loader.load(f"{http_server}/huge")) == "image_too_large"
    assert code(loader.load(f"{http_server}/slow/3")) == "url_timeout"


def test_unreachable_url(loader):
    import socket

    with socket.socket() as sock:  # a loopback port with nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert code(loader.load(f"http://127.0.0.1:{port}/x.jpg")) == "url_unreachable"


def test_load_many_keeps_order_and_mixes_sources(loader, http_server, odd_images, bad_images):
    refs = [odd_images["png"], f"{http_server}/img/rgba", None, bad_images["text"][0], f"{http_server}/nope"]
    results = loader.load_many(refs)
    assert [r.error is None for r in results] == [True, True, False, False, False]
    assert [code(r) for r in results[2:]] == ["image_null", "image_undecodable", "url_http_error"]
