"""Offline fixtures for tests, benchmarks and the demo: never imported by the layers below.

* ``random_model``: tiny or full-size random CLIPs; ``random_families``: random SigLIP, SigLIP2, open_clip;
* ``synthetic``: the coloured-shapes generator, its tokenizer, near copies; ``recipe``: the shipped model's config.
"""
