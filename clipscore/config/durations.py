"""Durations as people write them in flags and YAML: ``30m``, ``12h``, ``1d``, ``2d`` (also ``90s``, ``1.5h``)."""
from __future__ import annotations

import re

from clipscore.config.coerce import ConfigError

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$", re.IGNORECASE)


def parse_duration(text, what: str = "duration") -> float:
    """Seconds in ``text`` (a number and one unit of s, m, h, d); ConfigError naming ``what`` otherwise."""
    match = _DURATION.match(str(text))
    if not match:
        raise ConfigError(f"{what} must be a number with a unit s, m, h or d, e.g. 30m, 12h, 1d or 2d; "
                          f"got {text!r}.")
    return float(match.group(1)) * UNITS[match.group(2).lower()]


def format_duration(seconds: float) -> str:
    """``2d 3h``, ``3h 12m``, ``45m``, ``12s``: the two largest units, for logs and listings."""
    seconds = max(0, int(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
        if len(parts) == 2:
            break
    return " ".join(parts)
