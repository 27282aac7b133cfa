"""Render a clipscore report in headless Chromium: screenshot it and fail if an image did not load.

    python scripts/check_report.py out/demo_report.html --screenshot out/demo_report.png

The report marks ``<body>`` with ``data-images`` and ``data-broken-images`` once the page has loaded
(its own inline script); Chromium's ``--dump-dom`` returns the DOM after that, so a data URI that does
not decode, or any reference the offline page cannot fetch, shows up as a broken image.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    sys.exit("no Chromium found: install it (Debian: apt-get install chromium)")


def run(html: Path, *extra: str) -> str:
    cmd = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--virtual-time-budget=10000", "--no-first-run", *extra, html.resolve().as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--screenshot", type=Path, default=Path("out/report.png"))
    args = parser.parse_args(argv)
    dom = run(args.report, "--dump-dom")
    body = re.search(r"<body[^>]*>", dom)
    attrs = dict(re.findall(r'(data-[a-z-]+)="([^"]*)"', body.group(0) if body else ""))
    if "data-images" not in attrs:
        print(f"{args.report}: the page's load handler did not run", file=sys.stderr)
        return 1
    images, broken = int(attrs["data-images"]), int(attrs["data-broken-images"])
    args.screenshot.parent.mkdir(parents=True, exist_ok=True)
    run(args.report, f"--screenshot={args.screenshot.resolve()}", "--window-size=1280,5000", "--hide-scrollbars")
    print(f"{args.report}: {images} images, {broken} broken; screenshot {args.screenshot}")
    return 1 if broken or not images or not args.screenshot.is_file() else 0


if __name__ == "__main__":
    raise SystemExit(main())
