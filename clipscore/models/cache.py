"""The per-process model cache: the single owner of loaded models.

Filled lazily on first use inside a Spark Python worker (never on the driver, never at import time)
and kept across batches and tasks, which works because Spark reuses Python workers
(``spark.python.worker.reuse``, on by default).
"""
from __future__ import annotations

import threading
from typing import Any, Callable

from clipscore.models.runtime import ModelKey


class ModelCache:
    """Process-wide owner of loaded models, keyed by ``ModelKey``; loads each key once, thread-safely."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[ModelKey, Any] = {}

    def get(self, key: ModelKey, loader: Callable[[ModelKey], Any]):
        """The loaded model for ``key``, loading it with ``loader(key)`` on first use.

        The caller passes the loader (``clipscore.models.load_model``), as Spark's ``ModelCache`` takes a
        factory: the cache knows nothing of families, so nothing here imports them.
        """
        with self._lock:
            bundle = self._models.get(key)
            if bundle is None:
                bundle = loader(key)
                self._models[key] = bundle
            return bundle

    def clear(self) -> None:
        with self._lock:
            self._models.clear()

    def __len__(self) -> int:
        return len(self._models)


MODEL_CACHE = ModelCache()  # the one per-process owner; Spark workers reuse it across tasks
