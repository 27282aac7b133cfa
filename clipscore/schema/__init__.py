"""What a scoring run writes, with no dependencies: the vocabulary every other layer shares.

* ``errors``: the registry of row error categories (``score_error``'s ``category: detail``);
* ``columns``: the output columns of a run, their Spark types, embedding cells;
* ``bands``: score bands (``score_band``) from band edges.
"""
