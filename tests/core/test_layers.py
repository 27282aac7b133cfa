"""The layers, checked on the source: ``lint-imports`` (.importlinter) for the core's sub-packages, then an AST walk
that also sees imports inside functions: the core imports no Spark and none of its adapters, the UDF adapter
imports no job, and a job imports no other job (they share plumbing instead; only the CLI dispatches to them).

docs/architecture.md describes the layers; setup.py's LAYERS lists the core's.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# The commands: one module each in jobs/. Everything else there (session, tables, provenance, embeddings, staging,
# summary, ...) is plumbing that the jobs share. Commands to come are listed already. cli.py is on top of them all.
JOBS = frozenset({"score", "merge", "train", "report", "filter", "search", "dedup", "suggest", "explore",
                  "probe", "export", "clean"})
DISPATCHER = "cli"  # the one module that may import the jobs: it dispatches to them
FORBIDDEN_IN_CORE = ("clipscore.jobs", "clipscore.udfs", "pyspark", "delta")
FORBIDDEN_IN_CORE_TESTS = FORBIDDEN_IN_CORE  # tests/core/ runs without Spark: `pytest -m "not spark"`


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def imported_modules(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, module) for every import in the file, top-level or nested, relative ones resolved against ``package``.

    ``from a.b import c`` counts as ``a.b`` and ``a.b.c`` (c may be a module). The repository's top-level ``jobs``
    and ``udfs`` are installed as ``clipscore.jobs`` and ``clipscore.udfs``, so those names are mapped too.
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names if alias.name != "*"]
    return [(line, "clipscore." + m if _within(m, "jobs") or _within(m, "udfs") else m) for line, m in found]


def _package_of(path: Path, root: Path, package: str) -> str:
    """The package a module of ``root`` (installed as ``package``) lives in."""
    return ".".join((package, *path.relative_to(root).parts[:-1]))


def _violations(files, root: Path, package: str, forbidden) -> list[str]:
    """``forbidden(module_name, imported) -> reason or None`` over every import of every file."""
    problems: dict[tuple[str, int, str], str] = {}  # one line per import statement and reason
    for path in sorted(files):
        name = path.relative_to(root).with_suffix("").as_posix().replace("/", ".")
        for line, module in imported_modules(path, _package_of(path, root, package)):
            reason = forbidden(name, module)
            if reason:
                key = (str(path.relative_to(REPO)), line, reason)
                problems[key] = min(problems.get(key, module), module, key=len)
    return [f"{where}:{line}: imports {module} ({reason})" for (where, line, reason), module in sorted(problems.items())]


def test_import_linter_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.fail(f"{lint} is missing: install import-linter (requirements.txt)")
    done = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True, timeout=600)  # reads .importlinter
    assert done.returncode == 0, f"lint-imports failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"


def test_the_core_imports_no_spark_and_no_adapter():
    root = REPO / "clipscore"

    def forbidden(_, module):
        hit = next((prefix for prefix in FORBIDDEN_IN_CORE if _within(module, prefix)), None)
        return f"the core never imports {hit}" if hit else None

    problems = _violations(root.rglob("*.py"), root, "clipscore", forbidden)
    assert not problems, "\n" + "\n".join(problems)


def test_the_udfs_import_no_job():
    root = REPO / "udfs"

    def forbidden(_, module):
        return "the UDF adapter is below the jobs" if _within(module, "clipscore.jobs") else None

    problems = _violations(root.glob("*.py"), root, "clipscore.udfs", forbidden)
    assert not problems, "\n" + "\n".join(problems)


def test_jobs_import_plumbing_never_another_job():
    root = REPO / "jobs"
    assert {p.stem for p in root.glob("*.py")} & JOBS, "no job module found: is JOBS up to date?"

    def forbidden(name, module):
        if not _within(module, "clipscore.jobs"):
            return None
        target = module.split(".")[2] if module.count(".") >= 2 else None
        if target == DISPATCHER and name != DISPATCHER:
            return f"{DISPATCHER}.py imports the jobs to dispatch to them, so no module of jobs/ imports it back"
        if target not in JOBS or target == name:
            return None
        if name in JOBS:
            return f"job {name} imports job {target}: move what they share into plumbing"
        if name != DISPATCHER:
            return f"plumbing module {name} imports job {target}: only {DISPATCHER}.py dispatches to the jobs"
        return None

    problems = _violations(root.glob("*.py"), root, "clipscore.jobs", forbidden)
    assert not problems, "\n" + "\n".join(problems)


def test_core_tests_import_no_spark():
    """tests/core/ is what `pytest -m "not spark"` (make test-core) runs: nothing there may need Spark."""
    root = REPO / "tests" / "core"

    def forbidden(_, module):
        hit = next((prefix for prefix in FORBIDDEN_IN_CORE_TESTS if _within(module, prefix)), None)
        return "tests/core/ runs without Spark; move the test to tests/spark/" if hit else None

    problems = _violations(root.glob("*.py"), root, "tests.core", forbidden)
    assert not problems, "\n" + "\n".join(problems)


def test_imports_are_resolved_as_installed(tmp_path):
    """The walker itself: nested and relative imports, and the repository's jobs/ as clipscore.jobs."""
    module = tmp_path / "m.py"
    module.write_text("import os\n"
                      "def f():\n    from . import score\n    from .tables import col\n"
                      "    from ..udfs.clip_udf import reslice\n    from jobs.merge import run_merge\n")
    found = {m for _, m in imported_modules(module, "clipscore.jobs")}
    assert {"os", "clipscore.jobs.score", "clipscore.jobs.tables", "clipscore.udfs.clip_udf",
            "clipscore.jobs.merge"} <= found
