"""The BlobStore contract: every backend passes these tests unchanged.

The suite itself is public, :class:`sriblob.testing.BlobStoreContract`, so a
backend written outside sriblob runs exactly these tests; here it runs over
every built-in backend (the ``backend`` fixture in conftest.py).
"""

from __future__ import annotations

from sriblob.testing import BlobStoreContract


class TestContract(BlobStoreContract):
    """Every built-in backend, through the public contract suite."""
