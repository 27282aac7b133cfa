"""Stage 1a: turn an image reference (bytes, a path or a URL) into encoded bytes, or a row error.

Every failure is a ``FetchError(code, detail)`` whose code is a registered category
(``clipscore.errors``); ``ImageLoader`` turns it into the row's ``score_error``. Reading is bounded:
bytes are capped (``max_image_bytes``) before they are read in full, and URLs by ``http_timeout_s``.
"""
from __future__ import annotations

import os
import time
from typing import Any

from clipscore.config import ScoreConfig
from clipscore.errors import row_error

_CHUNK = 256 * 1024


class FetchError(Exception):
    """A row error while fetching: ``code`` is a category of ``clipscore.errors``."""

    def __init__(self, code: str, detail: str):
        super().__init__(row_error(code, detail))
        self.code, self.detail = code, detail


def is_remote(ref: str) -> bool:
    return "://" in ref and not ref.lower().startswith("file://")


def short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Fetcher:
    """Reads image bytes from cells, paths, fsspec URLs and http(s), with the config's limits."""

    def __init__(self, cfg: ScoreConfig):
        self.max_bytes = cfg.max_image_bytes
        self.timeout_s = cfg.http_timeout_s
        self.retries = cfg.http_retries
        self.base_path = cfg.image_base_path
        self._io_threads = cfg.io_threads
        self._http = None

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def read_bytes(self, ref: Any) -> bytes:
        if ref is None or (isinstance(ref, float) and ref != ref):  # None or NaN from pandas
            raise FetchError("image_null", "the image cell is null")
        if isinstance(ref, (bytes, bytearray, memoryview)):
            data = bytes(ref)
            if not data:
                raise FetchError("image_empty", "the image bytes are empty")
            if len(data) > self.max_bytes:
                raise FetchError("image_too_large", f"{len(data)} bytes (limit max_image_bytes={self.max_bytes})")
            return data
        if not isinstance(ref, str):
            raise FetchError("image_bad_type", f"expected bytes, a path or a URL, got {type(ref).__name__}")
        ref = ref.strip()
        if not ref:
            raise FetchError("image_null", "the image path is empty")
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
            raise FetchError("file_not_found", f"no such file: {path}") from None
        except OSError as exc:
            raise FetchError("file_unreadable", f"{path}: {exc.strerror or exc}") from None
        if os.path.isdir(path):
            raise FetchError("path_is_directory", f"{path} is a directory, not an image file")
        if size == 0:
            raise FetchError("image_empty", f"{path} is an empty file")
        if size > self.max_bytes:
            raise FetchError("image_too_large", f"{path} is {size} bytes (limit max_image_bytes={self.max_bytes})")
        try:
            with open(path, "rb") as handle:
                return handle.read(self.max_bytes + 1)
        except OSError as exc:
            raise FetchError("file_unreadable", f"{path}: {exc.strerror or exc}") from None

    def _read_fsspec(self, ref: str) -> bytes:
        try:
            import fsspec
        except ImportError:
            scheme = ref.split("://", 1)[0]
            raise FetchError(
                "unsupported_scheme",
                f"no filesystem for '{scheme}://' (pip install fsspec and its {scheme} driver, e.g. s3fs)",
            ) from None
        try:
            with fsspec.open(ref, "rb") as handle:
                data = handle.read(self.max_bytes + 1)
        except FileNotFoundError:
            raise FetchError("file_not_found", f"no such file: {ref}") from None
        except IsADirectoryError:
            raise FetchError("path_is_directory", f"{ref} is a directory, not an image file") from None
        except ImportError as exc:
            raise FetchError("unsupported_scheme", f"{ref}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - any filesystem failure is a row error
            raise FetchError("file_unreadable", f"{ref}: {type(exc).__name__}: {exc}") from None
        if not data:
            raise FetchError("image_empty", f"{ref} is an empty file")
        if len(data) > self.max_bytes:
            raise FetchError("image_too_large", f"{ref} is over max_image_bytes={self.max_bytes}")
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
            except FetchError as failed:
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
                    raise FetchError("url_http_error", f"HTTP {resp.status_code} from {url}")
                declared = resp.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > self.max_bytes:
                    raise FetchError("image_too_large", f"{url} declares {declared} bytes (limit max_image_bytes={self.max_bytes})")
                buf = bytearray()
                for chunk in resp.iter_content(_CHUNK):
                    buf += chunk
                    if len(buf) > self.max_bytes:
                        raise FetchError("image_too_large", f"{url} sent over max_image_bytes={self.max_bytes}")
                    if time.monotonic() > deadline:
                        raise FetchError("url_timeout", f"{url} took over http_timeout_s={self.timeout_s}s")
        except FetchError:
            raise
        except requests.exceptions.Timeout:
            raise FetchError("url_timeout", f"{url} did not answer within http_timeout_s={self.timeout_s}s") from None
        except requests.exceptions.ConnectionError as exc:
            raise FetchError("url_unreachable", f"{url}: {short(exc)}") from None
        except requests.exceptions.RequestException as exc:
            raise FetchError("url_unreachable", f"{url}: {type(exc).__name__}: {short(exc)}") from None
        if not buf:
            raise FetchError("image_empty", f"{url} returned an empty body")
        return bytes(buf)
