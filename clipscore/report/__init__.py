"""The curation report without Spark: the page, its figures, the sample's matrix and mislabels, one HTML template.

* ``render``: the page from what Spark computed (histogram arrays, grids, mislabel cards, ``templates/report.html``);
* ``mislabels``: where the matrix and the likely mislabels come from; ``sample``: the sample re-embedded;
* ``figures``: matplotlib (Agg) figures as PNG bytes; ``html``: thumbnail tables for notebooks (``pairs_html``).
"""
from clipscore.report.html import pairs_html

__all__ = ["pairs_html"]
