"""The PostgreSQL store, by job.

- :mod:`._sql`: the schema's migrations and the statements, names filled in;
- :mod:`._errors`: asyncpg's errors as sriblob's, and the predicates;
- :mod:`._pool`: the pool, and the tables made ready once;
- :mod:`._rows`: blobs cut into chunk rows, and read back;
- :mod:`._backend`: the backend over sriblob's tables;
- :mod:`._checkstack`: the backend over the original system's table;
- :mod:`._store`: :class:`PostgresBlobStore` and :class:`CheckstackLayout`.
"""

from ._backend import PostgresBackend
from ._checkstack import CheckstackBackend
from ._errors import INSTALL_HINT
from ._store import CheckstackLayout, PostgresBlobStore

__all__ = [
    "INSTALL_HINT",
    "CheckstackBackend",
    "CheckstackLayout",
    "PostgresBackend",
    "PostgresBlobStore",
]
