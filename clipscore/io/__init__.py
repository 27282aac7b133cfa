"""Bytes of an image reference, bounded in size, time and reach.

* ``fetch``: cells, paths, ``dbfs:/`` and fsspec schemes, and the dispatch to HTTP;
* ``http``: http(s) under one deadline per attempt, bounded retries and redirects;
* ``reach``: the address guard and the deadline; ``fetch_errors``: ``FetchError`` and URL redaction.
"""
