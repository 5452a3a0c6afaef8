"""The search service: an HTTP API around :class:`~sparsehybrid.search.HybridSearcher` that owns
an index and its warm models (``sparsehybrid serve``).

Importing this package is cheap; FastAPI is imported by :mod:`.app`, which builds the app.
"""
