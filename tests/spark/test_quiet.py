"""Quiet by default: a command prints its own output; what the JVM prints while it starts (Ivy's dependency
report, the launcher's and log4j's notices) is held back, and shown only when the start fails."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from clipscore.jobs.entry import is_debug
from clipscore.jobs.session import held_startup_output

# A stand-in for the JVM: it inherits file descriptor 2 at start, prints once at once, and once more when told to.
CHILD = """
import os, sys, time
from pathlib import Path
os.write(2, b"ivy: resolving dependencies\\n")
Path(sys.argv[1]).touch()
while not Path(sys.argv[2]).exists():
    time.sleep(0.01)
os.write(2, b"ERROR later, from the running JVM\\n")
"""


def _wait_for(path, seconds=20.0):
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def _stderr_until(capfd, text, seconds=20.0) -> str:
    seen = ""
    deadline = time.monotonic() + seconds
    while text not in seen and time.monotonic() < deadline:
        time.sleep(0.02)
        seen += capfd.readouterr().err
    return seen


def test_startup_output_is_held_and_later_output_passes(capfd, tmp_path):
    started, go = tmp_path / "started", tmp_path / "go"
    with held_startup_output():
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(started), str(go)])
        _wait_for(started)
    print("our own line", file=sys.stderr)
    go.touch()
    child.wait(timeout=30)
    err = _stderr_until(capfd, "ERROR later")
    assert "our own line" in err and "ERROR later, from the running JVM" in err
    assert "resolving dependencies" not in err


def test_startup_output_is_shown_when_the_start_fails(capfd, tmp_path):
    started, go = tmp_path / "started", tmp_path / "go"
    go.touch()
    with pytest.raises(RuntimeError, match="gateway"):
        with held_startup_output():
            child = subprocess.Popen([sys.executable, "-c", CHILD, str(started), str(go)])
            child.wait(timeout=30)
            raise RuntimeError("Java gateway process exited before sending its port number")
    err = _stderr_until(capfd, "resolving dependencies")
    assert "ivy: resolving dependencies" in err


@pytest.mark.parametrize("level, debug", [("DEBUG", True), ("debug", True), ("INFO", False), ("WARNING", False),
                                          ("ERROR", False)])
def test_only_debug_shows_everything(level, debug):
    assert is_debug(level) is debug
