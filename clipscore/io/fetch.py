"""Stage 1a: turn an image reference (bytes, a path or a URL) into encoded bytes, or a row error.

Every failure is a ``FetchError(code, detail)`` whose code is a registered category
(``clipscore.schema.errors``); ``ImageLoader`` turns it into the row's ``score_error``. A reference is never
trusted: it comes from a table that anyone upstream may have filled. ``Fetcher`` dispatches on the
kind of reference; the pieces live in their own modules:

* ``clipscore.io.http`` (``HttpFetcher``): http(s) URLs, bounded in time per URL, redirects,
  retries, streamed gzip/deflate with a decompressed-size cap;
* ``clipscore.io.reach``: which addresses a URL may connect to, and the per-attempt deadline;
* ``clipscore.io.fetch_errors``: ``FetchError`` and the redaction of URLs in reasons.

* **Bytes** are capped by ``max_image_bytes`` on every source, before they are read in full.
* **Paths**: only regular files are read; devices, FIFOs and sockets are refused from ``stat``
  without being opened (and the opened descriptor is checked again). fsspec URLs are read only for
  the schemes in ``fsspec_schemes``; chained URLs (``simplecache::s3://...``) are refused.
* **Reasons** never echo credentials, query strings or fragments of a URL (``redact_url``).
"""
from __future__ import annotations

import os
import stat
from typing import Any

from clipscore.config.options import ScoringOptions
from clipscore.io.fetch_errors import FetchError, redact_url, scrub, short
from clipscore.io.http import HttpFetcher

__all__ = ["FetchError", "Fetcher", "is_remote", "redact_url", "short"]


def is_remote(ref: str) -> bool:
    return "://" in ref and not ref.lower().startswith("file://")


class Fetcher:
    """Reads image bytes from cells, paths, fsspec URLs and http(s), with the config's limits.

    Thread-safe: ``ImageLoader`` calls ``read_bytes`` from its I/O threads at once.
    """

    def __init__(self, cfg: ScoringOptions):
        self.max_bytes = cfg.max_image_bytes
        self.fsspec_schemes = tuple(s.lower() for s in cfg.fsspec_schemes)
        self.base_path = cfg.image_base_path
        self._http = HttpFetcher(cfg)

    @property
    def max_seconds_per_url(self) -> float:
        """The most one http(s) reference can take (see ``HttpFetcher.read``)."""
        return self._http.max_seconds_per_url

    def close(self) -> None:
        self._http.close()

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
            return self._http.read(ref)
        if "://" in ref and not lowered.startswith("file://"):
            return self._read_fsspec(ref)
        return self._read_local(self._local_path(ref))

    # ---------------------------------------------------------------------------------------------
    # Local files
    # ---------------------------------------------------------------------------------------------
    def _local_path(self, ref: str) -> str:
        if ref.lower().startswith("file://"):
            ref = ref[len("file://"):]
            if ref.lower().startswith("localhost/"):
                ref = ref[len("localhost"):]
        elif ref.startswith("dbfs:/"):  # Databricks: DBFS is mounted at /dbfs on every node
            ref = "/dbfs/" + ref[len("dbfs:/"):].lstrip("/")
        if self.base_path and not os.path.isabs(ref):
            ref = os.path.join(self.base_path, ref)
        return ref

    def _check_file(self, path: str, info: os.stat_result) -> None:
        if stat.S_ISDIR(info.st_mode):
            raise FetchError("path_is_directory", f"{path} is a directory, not an image file")
        if not stat.S_ISREG(info.st_mode):
            raise FetchError("file_not_regular", f"{path} is {_file_kind(info.st_mode)}, not a regular file "
                                                 "(not read)")
        if info.st_size > self.max_bytes:
            raise FetchError("image_too_large",
                             f"{path} is {info.st_size} bytes (limit max_image_bytes={self.max_bytes})")

    def _read_local(self, path: str) -> bytes:
        try:
            self._check_file(path, os.stat(path))
        except (FileNotFoundError, NotADirectoryError):
            raise FetchError("file_not_found", f"no such file: {path}") from None
        except OSError as exc:
            raise FetchError("file_unreadable", f"{path}: {exc.strerror or exc}") from None
        # O_NONBLOCK: if the path was swapped for a FIFO since stat, opening it must not wait for a
        # writer; the descriptor is checked again before any read.
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            raise FetchError("file_not_found", f"no such file: {path}") from None
        except OSError as exc:
            raise FetchError("file_unreadable", f"{path}: {exc.strerror or exc}") from None
        try:
            self._check_file(path, os.fstat(fd))
            with os.fdopen(fd, "rb", closefd=True) as handle:
                fd = -1
                data = handle.read(self.max_bytes + 1)
        except OSError as exc:
            raise FetchError("file_unreadable", f"{path}: {exc.strerror or exc}") from None
        finally:
            if fd != -1:
                os.close(fd)
        if not data:
            raise FetchError("image_empty", f"{path} is an empty file")
        if len(data) > self.max_bytes:
            raise FetchError("image_too_large", f"{path} grew over max_image_bytes={self.max_bytes} while read")
        return data

    # ---------------------------------------------------------------------------------------------
    # fsspec
    # ---------------------------------------------------------------------------------------------
    def _read_fsspec(self, ref: str) -> bytes:
        shown = redact_url(ref)
        if "::" in ref:  # fsspec chains filesystems (simplecache::s3://...): caches, other protocols
            raise FetchError("unsupported_scheme", f"{shown}: chained URLs ('::') are not read; "
                                                   "give the plain URL of the file")
        scheme = ref.split("://", 1)[0].lower()
        if scheme not in self.fsspec_schemes:
            raise FetchError("unsupported_scheme",
                             f"{shown}: '{scheme}://' is not in fsspec_schemes "
                             f"({', '.join(self.fsspec_schemes) or 'empty'}); add it to that option to read it")
        try:
            import fsspec
        except ImportError:
            raise FetchError(
                "unsupported_scheme",
                f"no filesystem for '{scheme}://' (pip install fsspec and its {scheme} driver, e.g. s3fs)",
            ) from None
        try:
            with fsspec.open(ref, "rb") as handle:
                data = handle.read(self.max_bytes + 1)
        except FileNotFoundError:
            raise FetchError("file_not_found", f"no such file: {shown}") from None
        except IsADirectoryError:
            raise FetchError("path_is_directory", f"{shown} is a directory, not an image file") from None
        except ImportError as exc:
            raise FetchError("unsupported_scheme", scrub(f"{shown}: {short(exc)}", [ref])) from None
        except Exception as exc:  # noqa: BLE001 - any filesystem failure is a row error
            raise FetchError("file_unreadable", scrub(f"{shown}: {type(exc).__name__}: {short(exc)}", [ref])) from None
        if not data:
            raise FetchError("image_empty", f"{shown} is an empty file")
        if len(data) > self.max_bytes:
            raise FetchError("image_too_large", f"{shown} is over max_image_bytes={self.max_bytes}")
        return data


def _file_kind(mode: int) -> str:
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"
