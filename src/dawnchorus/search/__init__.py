"""Embedding search over an archive: index every window once, then find the calls nearest to
one or a few examples in milliseconds (``dawnchorus index`` and ``dawnchorus search``)."""

from .index import AnnIndex, index_archive, open_index, resolve_index_embedder
from .nearest import search_index
from .queries import Query, read_queries

__all__ = ["AnnIndex", "Query", "index_archive", "open_index", "read_queries", "resolve_index_embedder", "search_index"]
