"""Spark jobs: read, score, write, merge; spark-submit entry points."""
