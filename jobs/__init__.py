"""Spark jobs (``clipscore.jobs``). Commands, one module each: score, merge, train, report, filter, search, dedup,
suggest, explore, clean; ``cli`` (the ``clipscore`` entry point) is the only module that imports them, and no command
imports another. Plumbing they share: ``args``/``entry`` (flags, running a command), ``session``, ``names``/``tables``/
``writes`` (quoting, reading, safe writes), ``layout`` (files of a useful size), ``filesystem``/``stale`` (folders on any
Hadoop filesystem, killed runs' staging), ``pipeline`` (scoring for score and merge), ``staging``, ``summary``,
``provenance``, ``embeddings``, ``suggestions``, ``columns``, ``broadcast``."""
