"""Spark adapter: the pandas UDF that wraps the scoring core."""
