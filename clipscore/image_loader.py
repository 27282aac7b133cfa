"""Stage 1: turn an image reference (bytes, path or URL) into an RGB ``PIL.Image`` or a reason.

Every failure is a value, never an exception: ``load`` returns ``LoadedImage(image=None,
error="code: detail")`` and the row keeps going with a null score. The code before the colon is a
stable category (used by the job summary); the detail is for people.

Memory is bounded: bytes are capped (``max_image_bytes``) before they are read in full, and the
pixel count is checked from the header (``max_image_pixels``) before anything is decoded, so a
decompression bomb costs a few kilobytes, not gigabytes.
"""
from __future__ import annotations

import io
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Sequence

from PIL import Image, UnidentifiedImageError

from clipscore.config import ScoreConfig

_CHUNK = 256 * 1024


@dataclass(frozen=True)
class LoadedImage:
    image: Image.Image | None
    error: str | None = None
    # With ``defer_jpeg`` set, a checked RGB/grayscale JPEG comes back undecoded here instead, for a
    # batched torchvision/nvJPEG decode on the model's device (``gpu_decode``).
    jpeg: bytes | None = None


def _fail(code: str, detail: str) -> LoadedImage:
    return LoadedImage(None, f"{code}: {detail}")


class _Failed(Exception):
    """Internal: carries a row error out of the fetch helpers (never leaves this module)."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail


class ImageLoader:
    """Fetches and decodes images concurrently, with size, pixel and time limits from the config."""

    def __init__(self, cfg: ScoreConfig):
        self.max_bytes = cfg.max_image_bytes
        self.max_pixels = cfg.max_image_pixels
        self.timeout_s = cfg.http_timeout_s
        self.retries = cfg.http_retries
        self.base_path = cfg.image_base_path
        self.jpeg_draft = cfg.jpeg_draft
        self.defer_jpeg = False  # set by the scorer when JPEGs are decoded on the model's device
        self.target_size = 224  # refined by set_target_size() once the model is known
        self._io_threads = cfg.io_threads
        self._decode_threads = cfg.decode_threads or min(8, os.cpu_count() or 1)
        self._io_pool: ThreadPoolExecutor | None = None
        self._decode_pool: ThreadPoolExecutor | None = None
        self._http = None

    def set_target_size(self, shortest_edge: int) -> None:
        self.target_size = int(shortest_edge)

    # ------------------------------------------------------------------------------------------
    def load_many(self, refs: Sequence[Any]) -> list[LoadedImage]:
        """Load every reference, concurrently; the result is aligned with ``refs``."""
        if self._decode_pool is None:
            self._decode_pool = ThreadPoolExecutor(self._decode_threads, thread_name_prefix="clipscore-decode")
        futures = []
        for ref in refs:
            if isinstance(ref, str) and _is_remote(ref):
                if self._io_pool is None:
                    self._io_pool = ThreadPoolExecutor(self._io_threads, thread_name_prefix="clipscore-io")
                futures.append(self._io_pool.submit(self.load, ref))
            else:
                futures.append(self._decode_pool.submit(self.load, ref))
        return [f.result() for f in futures]

    def load(self, ref: Any) -> LoadedImage:
        try:
            data = self.read_bytes(ref)
        except _Failed as failed:
            return _fail(failed.code, failed.detail)
        return self.decode(data)

    def close(self) -> None:
        for pool in (self._io_pool, self._decode_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        self._io_pool = self._decode_pool = None
        if self._http is not None:
            self._http.close()
            self._http = None

    # ------------------------------------------------------------------------------------------
    # Fetching
    # ------------------------------------------------------------------------------------------
    def read_bytes(self, ref: Any) -> bytes:
        if ref is None or (isinstance(ref, float) and ref != ref):  # None or NaN from pandas
            raise _Failed("image_null", "the image cell is null")
        if isinstance(ref, (bytes, bytearray, memoryview)):
            data = bytes(ref)
            if not data:
                raise _Failed("image_empty", "the image bytes are empty")
            if len(data) > self.max_bytes:
                raise _Failed("image_too_large", f"{len(data)} bytes (limit max_image_bytes={self.max_bytes})")
            return data
        if not isinstance(ref, str):
            raise _Failed("image_bad_type", f"expected bytes, a path or a URL, got {type(ref).__name__}")
        ref = ref.strip()
        if not ref:
            raise _Failed("image_null", "the image path is empty")
        lowered = ref.lower()
        if lowered.startswith(("http://", "https://")):
            return self._read_url(ref)
        if "://" in ref and not lowered.startswith("file://"):
            return self._read_fsspec(ref)
        return self._read_local(self._local_path(ref))

    def _local_path(self, ref: str) -> str:
        if ref.lower().startswith("file://"):
            ref = ref[len("file://"):]
        elif ref.startswith("dbfs:/"):  # Databricks: DBFS is mounted at /dbfs on every node
            ref = "/dbfs/" + ref[len("dbfs:/"):].lstrip("/")
        if self.base_path and not os.path.isabs(ref):
            ref = os.path.join(self.base_path, ref)
        return ref

    def _read_local(self, path: str) -> bytes:
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            raise _Failed("file_not_found", f"no such file: {path}") from None
        except OSError as exc:
            raise _Failed("file_unreadable", f"{path}: {exc.strerror or exc}") from None
        if os.path.isdir(path):
            raise _Failed("path_is_directory", f"{path} is a directory, not an image file")
        if size == 0:
            raise _Failed("image_empty", f"{path} is an empty file")
        if size > self.max_bytes:
            raise _Failed("image_too_large", f"{path} is {size} bytes (limit max_image_bytes={self.max_bytes})")
        try:
            with open(path, "rb") as handle:
                return handle.read(self.max_bytes + 1)
        except OSError as exc:
            raise _Failed("file_unreadable", f"{path}: {exc.strerror or exc}") from None

    def _read_fsspec(self, ref: str) -> bytes:
        try:
            import fsspec
        except ImportError:
            scheme = ref.split("://", 1)[0]
            raise _Failed(
                "unsupported_scheme",
                f"no filesystem for '{scheme}://' (pip install fsspec and its {scheme} driver, e.g. s3fs)",
            ) from None
        try:
            with fsspec.open(ref, "rb") as handle:
                data = handle.read(self.max_bytes + 1)
        except FileNotFoundError:
            raise _Failed("file_not_found", f"no such file: {ref}") from None
        except IsADirectoryError:
            raise _Failed("path_is_directory", f"{ref} is a directory, not an image file") from None
        except ImportError as exc:
            raise _Failed("unsupported_scheme", f"{ref}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - any filesystem failure is a row error
            raise _Failed("file_unreadable", f"{ref}: {type(exc).__name__}: {exc}") from None
        if not data:
            raise _Failed("image_empty", f"{ref} is an empty file")
        if len(data) > self.max_bytes:
            raise _Failed("image_too_large", f"{ref} is over max_image_bytes={self.max_bytes}")
        return data

    def _session(self):
        if self._http is None:
            import requests
            from requests.adapters import HTTPAdapter

            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=self._io_threads, pool_maxsize=self._io_threads)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers["User-Agent"] = "clipscore/0.1 (+https://github.com/clipscore/clipscore)"
            self._http = session
        return self._http

    def _read_url(self, url: str) -> bytes:
        attempt = 0
        while True:
            try:
                return self._read_url_once(url)
            except _Failed as failed:
                retryable = failed.code in ("url_timeout", "url_unreachable") or failed.detail.startswith("HTTP 5")
                if not retryable or attempt >= self.retries:
                    raise
                attempt += 1
                time.sleep(min(0.2 * attempt, 1.0))

    def _read_url_once(self, url: str) -> bytes:
        import requests

        deadline = time.monotonic() + self.timeout_s
        try:
            with self._session().get(url, stream=True, timeout=(self.timeout_s, self.timeout_s)) as resp:
                if resp.status_code >= 400:
                    raise _Failed("url_http_error", f"HTTP {resp.status_code} from {url}")
                declared = resp.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > self.max_bytes:
                    raise _Failed("image_too_large", f"{url} declares {declared} bytes (limit max_image_bytes={self.max_bytes})")
                buf = bytearray()
                for chunk in resp.iter_content(_CHUNK):
                    buf += chunk
                    if len(buf) > self.max_bytes:
                        raise _Failed("image_too_large", f"{url} sent over max_image_bytes={self.max_bytes}")
                    if time.monotonic() > deadline:
                        raise _Failed("url_timeout", f"{url} took over http_timeout_s={self.timeout_s}s")
        except _Failed:
            raise
        except requests.exceptions.Timeout:
            raise _Failed("url_timeout", f"{url} did not answer within http_timeout_s={self.timeout_s}s") from None
        except requests.exceptions.ConnectionError as exc:
            raise _Failed("url_unreachable", f"{url}: {_short(exc)}") from None
        except requests.exceptions.RequestException as exc:
            raise _Failed("url_unreachable", f"{url}: {type(exc).__name__}: {_short(exc)}") from None
        if not buf:
            raise _Failed("image_empty", f"{url} returned an empty body")
        return bytes(buf)

    # ------------------------------------------------------------------------------------------
    # Decoding
    # ------------------------------------------------------------------------------------------
    def decode(self, data: bytes) -> LoadedImage:
        """Decode to RGB exactly as the reference does: first frame, ``.convert("RGB")``."""
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            return _fail("image_too_large", str(exc))
        except UnidentifiedImageError:
            return _fail("image_undecodable", "not a recognised image format")
        except Exception as exc:  # noqa: BLE001 - any decoder failure is a row error
            return _fail("image_undecodable", f"{type(exc).__name__}: {_short(exc)}")
        try:
            width, height = image.size
            if width < 1 or height < 1:
                return _fail("image_undecodable", f"image has size {width}x{height}")
            if width * height > self.max_pixels:
                return _fail(
                    "image_too_large",
                    f"{width}x{height} = {width * height} pixels (limit max_image_pixels={self.max_pixels})",
                )
            if self.defer_jpeg and image.format == "JPEG" and image.mode in ("RGB", "L"):
                return LoadedImage(None, None, jpeg=data)  # header checked; pixels decoded later
            if self.jpeg_draft and image.format == "JPEG":
                # DCT-domain downscale while decoding: much faster for big JPEGs, changes pixels a little.
                scale = self.target_size / min(width, height)
                image.draft("RGB", (max(1, int(width * scale + 1)), max(1, int(height * scale + 1))))
            image.load()
            return LoadedImage(image.convert("RGB"))
        except Image.DecompressionBombError as exc:
            return _fail("image_too_large", str(exc))
        except OSError as exc:
            message = _short(exc)
            if "truncated" in message or "broken data stream" in message or "premature end" in message.lower():
                return _fail("image_truncated", message)
            return _fail("image_undecodable", message)
        except Exception as exc:  # noqa: BLE001
            return _fail("image_undecodable", f"{type(exc).__name__}: {_short(exc)}")
        finally:
            image.close()


def _is_remote(ref: str) -> bool:
    return "://" in ref and not ref.lower().startswith("file://")


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
