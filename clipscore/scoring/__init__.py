"""The scoring core: pandas in, pandas out, for one model or several.

* ``scorer``: ``PairScorer`` and ``score_pandas`` (read, decode, preprocess, tokenize, embed, score, band);
* ``encode``: images and captions to unit embeddings in chunks (CLIP's captions in length buckets);
* ``captions``: caption checks; ``plan``: a run's output columns on the driver; ``query``: one query embedded.
"""
