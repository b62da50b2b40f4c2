"""One store's SQL: its schema's migrations and statements, names filled in."""

from __future__ import annotations

import hashlib
from typing import Final

import attrs

from sriblob._config import LONGEST_TABLE_SUFFIX

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Sql", "quote"]

#: The schema version this code reads and writes; see ``MIGRATIONS``.
SCHEMA_VERSION: Final = 3

# Each entry moves the schema from the previous version to its index + 1.
# Chunk rows carry a surrogate blob id so a write can stream them before its
# integrity is known (add()); the blob row, inserted last in the same
# transaction, is what makes a blob exist. The foreign key is deferred for
# that reason, and cascades so deleting the blob row deletes its chunks.
# Chunks are usually compressed archives already: STORAGE EXTERNAL keeps
# them out of line in TOAST without a futile compression attempt.
MIGRATIONS: Final = (
    """
    CREATE SEQUENCE {blob_ids};
    CREATE TABLE {blobs} (
        integrity text COLLATE "C" PRIMARY KEY,
        id bigint NOT NULL UNIQUE,
        size bigint NOT NULL CHECK (size >= 0),
        created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE {chunks} (
        blob_id bigint NOT NULL REFERENCES {blobs} (id)
            ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
        seq integer NOT NULL CHECK (seq >= 0),
        data bytea NOT NULL,
        PRIMARY KEY (blob_id, seq)
    );
    ALTER TABLE {chunks} ALTER COLUMN data SET STORAGE EXTERNAL;
    """,
    # 2: who holds the maintenance lease (the lock itself is advisory).
    """
    CREATE TABLE {lease} (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        purpose text NOT NULL,
        host text NOT NULL,
        pid integer NOT NULL,
        since timestamptz NOT NULL,
        token text NOT NULL
    );
    """,
    # 3: the running total of blob sizes, kept by a trigger on the blob
    # table, so every writer (whatever its sriblob version or quota) keeps
    # it exact; a put's insert updates the one row, which serialises the
    # commits of new blobs, and reads the total in the same transaction.
    """
    CREATE TABLE {usage} (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        total bigint NOT NULL
    );
    INSERT INTO {usage} (total) SELECT coalesce(sum(size), 0) FROM {blobs};
    CREATE FUNCTION {count_usage}() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            UPDATE {usage} SET total = total + NEW.size;
        ELSE
            UPDATE {usage} SET total = total - OLD.size;
        END IF;
        RETURN NULL;
    END
    $$;
    CREATE TRIGGER {usage_trigger} AFTER INSERT OR DELETE ON {blobs}
        FOR EACH ROW EXECUTE PROCEDURE {count_usage}();
    """,
)


def quote(identifier: str) -> str:
    """Quote a validated identifier (``[a-z0-9_]``; quoting keeps keywords usable)."""
    return f'"{identifier}"'


@attrs.frozen
class Sql:
    """One store's statements, its quoted schema-qualified names filled in.

    Every name passed the config's validation and is quoted; values are
    always bind parameters. That is why the f-strings below are safe.
    """

    schema: str
    blobs: str
    chunks: str
    blob_ids: str
    version: str
    lock_key: int
    lease_key: int
    migrations: tuple[str, ...]
    create_version: str
    read_version: str
    write_version: str
    next_id: str
    insert_chunk: str
    insert_blob: str
    renew: str
    lock_existing: str
    get: str
    find: str
    stat: str
    open_chunks: str
    chunk_width: str
    has: str
    delete: str
    delete_older: str
    list_page: str
    write_lease: str
    read_lease: str
    clear_lease: str
    read_usage: str
    adjust_usage: str

    @classmethod
    def build(cls, schema: str, prefix: str) -> Sql:
        def name(suffix: str) -> str:
            return f"{quote(schema)}.{quote(prefix + suffix)}"

        blobs, chunks, version = (
            name("blobs"),
            name("chunks"),
            name(LONGEST_TABLE_SUFFIX),
        )
        blob_ids = name("blob_ids")
        lease = name("lease")
        usage = name("usage")
        # One advisory lock per table set, so unrelated stores don't queue.
        digest = hashlib.sha256(f"sriblob:{schema}.{prefix}".encode()).digest()
        lease_digest = hashlib.sha256(
            f"sriblob-lease:{schema}.{prefix}".encode()
        ).digest()
        return cls(
            schema=schema,
            blobs=blobs,
            chunks=chunks,
            blob_ids=blob_ids,
            version=version,
            lock_key=int.from_bytes(digest[:8], "big", signed=True),
            lease_key=int.from_bytes(lease_digest[:8], "big", signed=True),
            migrations=tuple(
                script.format(
                    blobs=blobs,
                    chunks=chunks,
                    blob_ids=blob_ids,
                    lease=lease,
                    usage=usage,
                    count_usage=name("count_usage"),
                    usage_trigger=quote(prefix + "usage"),
                )
                for script in MIGRATIONS
            ),
            create_version=(
                f"CREATE TABLE {version} ("
                " singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),"
                " version integer NOT NULL);"
                f" INSERT INTO {version} (version) VALUES (0)"
            ),
            read_version=f"SELECT version FROM {version}",
            write_version=f"UPDATE {version} SET version = $1",
            next_id=f"SELECT nextval('{blob_ids}')",
            insert_chunk=(
                f"INSERT INTO {chunks} (blob_id, seq, data) VALUES ($1, $2, $3)"
            ),
            # clock_timestamp(), not now(): now() is when the transaction
            # began, and a long put would look old the moment it commits.
            insert_blob=(
                f"INSERT INTO {blobs} (integrity, id, size, created_at)"
                " VALUES ($1, $2, $3, clock_timestamp())"
                " ON CONFLICT (integrity) DO NOTHING RETURNING true"
            ),
            renew=(
                f"UPDATE {blobs} SET created_at = clock_timestamp()"
                " WHERE integrity = $1 RETURNING size"
            ),
            lock_existing=(f"SELECT size FROM {blobs} WHERE integrity = $1 FOR UPDATE"),
            get=(
                f"SELECT b.size, c.data FROM {blobs} b LEFT JOIN {chunks} c"
                " ON c.blob_id = b.id WHERE b.integrity = $1 ORDER BY c.seq"
            ),
            find=f"SELECT id, size FROM {blobs} WHERE integrity = $1",
            stat=f"SELECT size, created_at FROM {blobs} WHERE integrity = $1",
            open_chunks=(
                f"SELECT seq, data FROM {chunks} WHERE blob_id = $1 AND seq >= $2"
                " ORDER BY seq"
            ),
            chunk_width=(
                f"SELECT octet_length(data) FROM {chunks} WHERE blob_id = $1"
                " AND seq = 0"
            ),
            has=f"SELECT EXISTS (SELECT 1 FROM {blobs} WHERE integrity = $1)",
            delete=f"DELETE FROM {blobs} WHERE integrity = $1",
            # The main query sees the table as it was before the DELETE: the
            # answer is "deleted, or was never there".
            delete_older=(
                f"WITH deleted AS (DELETE FROM {blobs} WHERE integrity = $1"
                " AND created_at <= $2 RETURNING 1)"
                " SELECT EXISTS (SELECT 1 FROM deleted) OR NOT EXISTS"
                f" (SELECT 1 FROM {blobs} WHERE integrity = $1)"
            ),
            list_page=(
                f"SELECT integrity FROM {blobs} WHERE integrity > $1"
                " ORDER BY integrity LIMIT $2"
            ),
            write_lease=(
                f"INSERT INTO {lease} (purpose, host, pid, since, token)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (singleton) DO UPDATE"
                " SET purpose = $1, host = $2, pid = $3, since = $4, token = $5"
            ),
            read_lease=f"SELECT purpose, host, pid, since, token FROM {lease}",
            clear_lease=f"DELETE FROM {lease} WHERE token = $1",
            read_usage=f"SELECT total FROM {usage}",
            adjust_usage=(
                f"UPDATE {usage} SET total = greatest(0, total + $1) RETURNING total"
            ),
        )
