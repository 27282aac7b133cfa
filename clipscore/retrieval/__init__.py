"""Work on stored embeddings: no model, no decode.

* ``vectors``: embedding cells to matrices, exact top-k and its merge, FAISS flat search;
* ``dedup``: the greedy near-duplicate rule within a cluster, bounded blocks;
* ``suggest``: better captions from the table's own captions.
"""
