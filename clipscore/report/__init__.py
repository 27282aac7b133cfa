"""The curation report: figures, the re-embedded sample, one HTML template.

* ``figures``: matplotlib (Agg) figures as PNG bytes; ``sample``: the sample's similarity matrix and mislabels;
* ``html``: thumbnails tables for notebooks (``pairs_html``) and the report page (``templates/report.html``).
"""
from clipscore.report.html import pairs_html

__all__ = ["pairs_html"]
