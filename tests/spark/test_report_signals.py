"""The report shows the signals a table holds and what each rule would drop (counts checked against pandas)."""
from __future__ import annotations

import re
from html import escape

import numpy as np
import pandas as pd

from clipscore.jobs.report import ReportOptions, run_report
from support.images import encode, photo_like


def test_signals_section_and_rule_table(spark, tmp_path):
    rng = np.random.default_rng(3)
    n = 300
    width = rng.integers(60, 900, n)
    height = rng.integers(60, 900, n)
    lang = rng.choice(["en", "de", None], n, p=[0.7, 0.2, 0.1])
    words = rng.integers(1, 9, n)
    df = pd.DataFrame({
        "id": np.arange(n), "image": [encode(photo_like(16, 16, seed=i % 5), "PNG") for i in range(n)],
        "caption": [f"caption {i}" for i in range(n)], "similarity": rng.normal(0.25, 0.05, n).astype("float32"),
        "score_band": "b", "score_error": None, "image_width": width.astype("int32"), "image_height": height.astype("int32"),
        "image_format": rng.choice(["JPEG", "PNG", "WEBP"], n), "image_bytes": rng.integers(1000, 90000, n),
        "caption_chars": (words * 6).astype("int32"), "caption_words": words.astype("int32"),
        "caption_tokens": (words + 2).astype("int32"), "caption_truncated": words > 7,
        "caption_language": lang, "caption_language_score": rng.random(n).astype("float32"),
        "image_phash": [f"{i % 40:016x}" for i in range(n)], "concept_watermark": rng.random(n).astype("float32"),
    })
    source = str(tmp_path / "scored")
    spark.createDataFrame(df.astype(object).where(df.notna(), None),
                          "id long, image binary, caption string, similarity float, score_band string, score_error string, "
                          "image_width int, image_height int, image_format string, image_bytes long, caption_chars int, "
                          "caption_words int, caption_tokens int, caption_truncated boolean, caption_language string, "
                          "caption_language_score float, image_phash string, concept_watermark float"
                          ).write.format("delta").save(source)
    out = tmp_path / "report.html"
    result = run_report(spark, ReportOptions(input=source, output=str(out), sample=8, thresholds=(0.28,)))
    html = out.read_text(encoding="utf-8")
    for name in ("image_width", "caption_language", "image_format", "caption_truncated", "concept_watermark"):
        assert f"signal_{name}" in result["figures"] and f'alt="{name} distribution"' in html
    distinct = int(re.search(r"image_phash: 300 rows with a value, (\d+) distinct", html).group(1))
    assert abs(distinct - 40) <= 2  # 40 distinct hashes among 300 rows (approx_count_distinct: within 5 %)

    # the rule table: datacomp-basic's rules by default (the table has its signals) and the threshold
    english = lang == "en"
    dropped = {
        "english caption": int((~english).sum()),
        "more than 2 words": int((words <= 2).sum()),
        "more than 5 characters": int((words * 6 <= 5).sum()),
        "shorter side >= 200 px": int(((width < 200) | (height < 200)).sum()),
        "aspect ratio <= 3": int(((width > 3 * height) | (height > 3 * width)).sum()),
        "similarity >= 0.28": int((df.similarity < 0.28).sum()),
    }
    together = ~(english & (words > 2) & (words * 6 > 5) & (width >= 200) & (height >= 200) & (width <= 3 * height)
                 & (height <= 3 * width) & (df.similarity >= 0.28))
    section = html[html.index('id="rules"'):]
    for rule, count in dropped.items():
        assert re.search(rf"<td>{re.escape(escape(rule))}</td><td><code>[^<]*</code></td><td class=\"num\">{count:,}</td>", section), rule
    assert f'<th>all together</th><td></td><td class="num">{int(together.sum()):,}</td>' in section
