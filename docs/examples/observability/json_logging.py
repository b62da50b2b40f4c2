"""sriblob's log records as JSON lines, with its fields as keys.

Every record sriblob logs carries ``sriblob_store``, ``sriblob_op`` and
``sriblob_integrity`` (None when the record is about no one blob). A JSON
formatter that copies them out (python-json-logger does it by itself) lets
a log pipeline filter by store, operation or blob.
"""

import asyncio
import json
import logging
import sys
import tempfile

import sriblob

FIELDS = ("sriblob_store", "sriblob_op", "sriblob_integrity")


class JSONFormatter(logging.Formatter):
    """One JSON object per record: level, logger, message, sriblob's fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        line = {
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in FIELDS:
            if hasattr(record, key):
                line[key] = getattr(record, key)
        return json.dumps(line)


handler = logging.StreamHandler(sys.stdout)
handler.setFormatter(JSONFormatter())
logging.getLogger("sriblob").addHandler(handler)
logging.getLogger("sriblob").setLevel(logging.DEBUG)  # one line per call


async def main() -> None:
    """Add a blob and read it back: two DEBUG records."""
    with tempfile.TemporaryDirectory() as root:
        async with sriblob.FilesystemBlobStore(root, id="packages") as store:
            integrity = await store.add(b"a package tarball")
            await store.get(integrity)


asyncio.run(main())
