"""Packaging for clipscore.

The repository keeps the layout users asked for (``jobs/``, ``udfs/``, ``conf/`` at the top level),
but generic names like ``jobs`` must never land in site-packages where they would clash with other
projects. ``package_dir`` maps them under the project's own namespace instead:

    clipscore/   -> clipscore         (the pure scoring core: no Spark import)
    udfs/        -> clipscore.udfs    (the pandas UDF adapter)
    jobs/        -> clipscore.jobs    (Spark jobs: score, merge, spark-submit entry points)
    conf/        -> clipscore.conf    (default YAML config, shipped as package data)

so ``import clipscore.jobs.score`` works the same from a wheel, an editable install or ``--py-files``.
"""
import re
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "clipscore" / "__init__.py").read_text()).group(1)

# The core's layers, bottom up (docs/architecture.md; enforced by tests/core/test_layers.py).
LAYERS = ("schema", "config", "io", "images", "models", "signals", "scoring", "retrieval", "report", "training", "devtools")

setup(
    name="clipscore",
    version=VERSION,
    description="Score image-caption pairs with CLIP at lakehouse scale (PySpark pandas UDF, Delta MERGE)",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=["clipscore", *(f"clipscore.{layer}" for layer in LAYERS), "clipscore.udfs", "clipscore.jobs", "clipscore.conf"],
    package_dir={
        "clipscore": "clipscore",
        "clipscore.udfs": "udfs",
        "clipscore.jobs": "jobs",
        "clipscore.conf": "conf",
    },
    package_data={"clipscore.conf": ["*.yaml", "*.sh"], "clipscore.report": ["templates/*.html"]},
    include_package_data=False,
    # Ranges a cluster install needs; requirements.txt pins the exact versions we test.
    install_requires=[
        "torch>=2.2",
        "transformers>=4.45,<6",
        "safetensors>=0.4.3",
        "pandas>=2.0,<3",
        "pyarrow>=11",
        "numpy>=1.23",
        "pillow>=10.0",
        "simplejpeg>=1.7",  # libjpeg-turbo straight into numpy (exact JPEG frames, DCT-scaled fast ones)
        "sentencepiece>=0.2",  # SigLIP/SigLIP2 tokenizers (SentencePiece models)
        "pyyaml>=6.0",
        "requests>=2.31",
        "matplotlib>=3.7",  # the curation report's figures
        "faiss-cpu>=1.8",  # near-duplicate clustering (clipscore dedup)
        "jinja2>=3.1",  # the curation report's HTML template
    ],
    extras_require={
        # Spark and Delta are usually provided by the cluster (Databricks, EMR, Dataproc), so they are extras.
        "spark": ["pyspark>=3.5", "delta-spark>=3.2"],
        "gpu-decode": ["torchvision>=0.17"],
        # open_clip models (open_clip:ARCH/PRETRAINED): the LAION/DataComp/DFN zoo in open_clip's format.
        "open_clip": ["open_clip_torch>=3.0"],
        "int8": ["torchao>=0.10"],  # precision=int8 on CPU once torch drops torch.ao.quantization
        "fs": ["fsspec>=2023.1"],
        "dev": ["pytest>=8", "psutil>=5.9", "scikit-image>=0.24"],
    },
    entry_points={"console_scripts": ["clipscore=clipscore.jobs.cli:main"]},
)
