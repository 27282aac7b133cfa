"""Spark jobs (``clipscore.jobs``). Commands, one module each: score, merge, train, report, filter, search, dedup,
suggest, explore; ``cli`` (the ``clipscore`` entry point) is the only module that imports them, and no command
imports another. Plumbing they share: ``args``/``entry`` (flags, running a command), ``session``, ``names``/``tables``/
``writes`` (quoting, reading, safe writes), ``pipeline`` (scoring for score and merge), ``staging``, ``summary``,
``provenance``, ``embeddings``, ``suggestions``, ``columns``, ``broadcast``."""
