"""Import paths from before the core was split into layers (0.1), still importable.

``import clipscore.scorer`` gives ``clipscore.scoring.scorer`` itself (the same module object), with a
``DeprecationWarning`` that names the new path. A module that was split in two (``preprocess``,
``model``, ``columns``) is served by a stand-in that finds each name in the modules it went to.
The table is docs/architecture.md's "Moved import paths".
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

MOVED: dict[str, tuple[str, ...]] = {
    "clipscore.errors": ("clipscore.schema.errors",),
    "clipscore.columns": ("clipscore.schema.columns", "clipscore.scoring.plan"),
    "clipscore.bands": ("clipscore.schema.bands",),
    "clipscore.coerce": ("clipscore.config.coerce",),
    "clipscore.options": ("clipscore.config.options",),
    "clipscore.fetch": ("clipscore.io.fetch",),
    "clipscore.fetch_errors": ("clipscore.io.fetch_errors",),
    "clipscore.http_fetch": ("clipscore.io.http",),
    "clipscore.reach": ("clipscore.io.reach",),
    "clipscore.image_loader": ("clipscore.images.loader",),
    "clipscore.frames": ("clipscore.images.frames",),
    "clipscore.preprocess": ("clipscore.models.preprocess", "clipscore.images.jpeg", "clipscore.scoring.captions"),
    "clipscore.model": ("clipscore.models.runtime", "clipscore.models.cache"),
    "clipscore.families": ("clipscore.models",),
    "clipscore.families.base": ("clipscore.models.base",),
    "clipscore.families.hf": ("clipscore.models.hf",),
    "clipscore.families.clip": ("clipscore.models.clip",),
    "clipscore.families.siglip": ("clipscore.models.siglip",),
    "clipscore.families.openclip": ("clipscore.models.openclip",),
    "clipscore.encode": ("clipscore.scoring.encode",),
    "clipscore.scorer": ("clipscore.scoring.scorer",),
    "clipscore.query": ("clipscore.scoring.query",),
    "clipscore.vectors": ("clipscore.retrieval.vectors",),
    "clipscore.dedup": ("clipscore.retrieval.dedup",),
    "clipscore.suggest": ("clipscore.retrieval.suggest",),
    "clipscore.report_figures": ("clipscore.report.figures",),
    "clipscore.report_sample": ("clipscore.report.sample",),
    "clipscore.random_model": ("clipscore.devtools.random_model",),
    "clipscore.random_families": ("clipscore.devtools.random_families",),
    "clipscore.synthetic": ("clipscore.devtools.synthetic",),
    "clipscore.cli": ("clipscore.jobs.cli",),
    "clipscore.training.recipe": ("clipscore.devtools.recipe",),
}


class _Loader(importlib.abc.Loader):
    def __init__(self, targets: tuple[str, ...]):
        self.targets = targets

    def create_module(self, spec):
        warnings.warn(f"{spec.name} moved to {' and '.join(self.targets)}; import it from there",
                      DeprecationWarning, stacklevel=3)
        if len(self.targets) == 1:
            return importlib.import_module(self.targets[0])
        return _Union(spec.name, [importlib.import_module(t) for t in self.targets])

    def exec_module(self, module):  # the target modules ran already
        pass


class _Union(types.ModuleType):
    """A split module's old name: each attribute from the first new module that has it."""

    def __init__(self, name: str, parts: list[types.ModuleType]):
        super().__init__(name)
        self._parts = parts

    def __getattr__(self, attr: str):
        for part in self._parts:
            if hasattr(part, attr):
                return getattr(part, attr)
        raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r}")


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        targets = MOVED.get(fullname)
        if targets is None:
            return None
        return importlib.util.spec_from_loader(fullname, _Loader(targets))


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
