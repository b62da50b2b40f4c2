"""What each S3 server does where servers differ, and that sriblob copes.

These pin the facts in docs/compatibility.md to the servers ``nox -s compat``
runs: a server whose behaviour changes fails here, and the table is updated
with it. Each raw probe (plain boto3) is paired with the store's behaviour.
"""

from __future__ import annotations

import email.utils
import time
import uuid
from typing import TYPE_CHECKING

import attrs
import pytest
from botocore.exceptions import ClientError

from sriblob import BucketNotFound, S3BlobStore, S3StoreConfig

from .helpers import S3Target, blob, collect, integrity_of

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

pytestmark = pytest.mark.s3

MiB = 1024 * 1024


def error_of(call: object) -> tuple[str, int]:
    """Return the error code and HTTP status a ClientError carried."""
    assert isinstance(call, ClientError)
    meta = call.response.get("ResponseMetadata", {})
    return str(call.response.get("Error", {}).get("Code")), meta.get(
        "HTTPStatusCode", 0
    )


class TestMultipart:
    def test_complete_etag(
        self, s3_admin: S3Client, s3_config: S3StoreConfig, s3_target: S3Target
    ) -> None:
        """CompleteMultipartUpload's ETag is empty on Ceph RGW 16; HEAD has it."""
        bucket, key = s3_config.bucket, "etag-probe"
        upload = s3_admin.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        parts: list[CompletedPartTypeDef] = []
        for number, size in [(1, 5 * MiB), (2, 10)]:
            uploaded = s3_admin.upload_part(
                Bucket=bucket,
                Key=key,
                UploadId=upload,
                PartNumber=number,
                Body=blob(size),
            )
            parts.append({"PartNumber": number, "ETag": uploaded["ETag"]})

        done = s3_admin.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
        )

        head = s3_admin.head_object(Bucket=bucket, Key=key)
        assert head["ContentLength"] == 5 * MiB + 10
        assert bool(done.get("ETag", "").strip('"')) is s3_target.complete_etag
        # sriblob never reads that ETag: its multipart writes verify by hash.

    def test_abort(
        self, s3_admin: S3Client, s3_config: S3StoreConfig, s3_target: S3Target
    ) -> None:
        """AbortMultipartUpload works everywhere but s3rver (405 MethodNotAllowed)."""
        bucket = s3_config.bucket
        upload = s3_admin.create_multipart_upload(Bucket=bucket, Key="abort-probe")

        def abort() -> object:
            return s3_admin.abort_multipart_upload(
                Bucket=bucket, Key="abort-probe", UploadId=upload["UploadId"]
            )

        if s3_target.aborts_uploads:
            abort()
        else:
            with pytest.raises(ClientError) as excinfo:
                abort()
            assert error_of(excinfo.value) == ("MethodNotAllowed", 405)


class TestConditionalCreate:
    def test_if_none_match(
        self, s3_admin: S3Client, s3_config: S3StoreConfig, s3_target: S3Target
    ) -> None:
        """If-None-Match: * keeps an existing object, except on s3rver (ignored)."""
        bucket = s3_config.bucket
        s3_admin.put_object(Bucket=bucket, Key="cond", Body=b"first")

        def overwrite() -> object:
            return s3_admin.put_object(
                Bucket=bucket, Key="cond", Body=b"second", IfNoneMatch="*"
            )

        if s3_target.conditional_create:
            with pytest.raises(ClientError) as excinfo:
                overwrite()
            assert error_of(excinfo.value) == ("PreconditionFailed", 412)
        else:
            overwrite()
        kept = s3_admin.get_object(Bucket=bucket, Key="cond")["Body"].read()
        assert kept == (b"first" if s3_target.conditional_create else b"second")

    async def test_store_needs_no_conditional_writes(
        self, s3_config: S3StoreConfig
    ) -> None:
        """A blob written again stays intact, with or without If-None-Match."""
        data = blob(6 * MiB)
        async with S3BlobStore(s3_config) as first, S3BlobStore(s3_config) as second:
            integrity = await first.add(data)
            await second.put(integrity, data)
            assert await first.get(integrity) == data
            assert await collect(first) == {integrity}


class TestRangedGet:
    def test_range(self, s3_admin: S3Client, s3_config: S3StoreConfig) -> None:
        """A ranged GET answers 206 with exactly the bytes asked for."""
        data = blob(MiB)
        s3_admin.put_object(Bucket=s3_config.bucket, Key="range", Body=data)

        got = s3_admin.get_object(
            Bucket=s3_config.bucket, Key="range", Range="bytes=1000-1999"
        )

        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["Body"].read() == data[1000:2000]


class TestChecksums:
    @pytest.mark.parametrize("mode", ["when_required", "when_supported"])
    async def test_checksum_modes_round_trip(
        self, s3_config: S3StoreConfig, mode: str
    ) -> None:
        """Both checksum settings store and read single and multipart blobs."""
        config = attrs.evolve(s3_config, checksum_mode=mode)  # type: ignore[arg-type]
        async with S3BlobStore(config) as store:
            for data in [b"small", blob(11 * MiB)]:
                integrity = await store.add(data)
                assert await store.get(integrity) == data


class TestMissing:
    def test_missing_bucket_codes(
        self, s3_admin: S3Client, s3_target: S3Target
    ) -> None:
        """Every server answers NoSuchBucket (404), and HEAD a bare 404.

        Except that SeaweedFS creates the bucket on a PutObject: the reason
        the store refuses a missing bucket when it opens.
        """
        bucket = f"missing-{uuid.uuid4().hex}"
        calls: list[Callable[[], object]] = [
            lambda: s3_admin.get_object(Bucket=bucket, Key="x"),
            lambda: s3_admin.list_objects_v2(Bucket=bucket),
            lambda: s3_admin.delete_object(Bucket=bucket, Key="x"),
        ]
        if s3_target.creates_missing_buckets:
            s3_admin.put_object(Bucket=bucket, Key="x", Body=b"")
            assert s3_admin.head_bucket(Bucket=bucket)
            s3_admin.delete_object(Bucket=bucket, Key="x")
            s3_admin.delete_bucket(Bucket=bucket)
        else:
            calls.append(lambda: s3_admin.put_object(Bucket=bucket, Key="x", Body=b""))
        for call in calls:
            with pytest.raises(ClientError) as excinfo:
                call()
            assert error_of(excinfo.value) == ("NoSuchBucket", 404)
        with pytest.raises(ClientError) as excinfo:
            s3_admin.head_object(Bucket=bucket, Key="x")
        assert error_of(excinfo.value) == ("404", 404)

    async def test_store_maps_a_missing_bucket(self, s3_config: S3StoreConfig) -> None:
        """A missing bucket is BucketNotFound when the store opens, on every server."""
        config = attrs.evolve(s3_config, bucket=f"missing-{uuid.uuid4().hex}")
        with pytest.raises(BucketNotFound):
            async with S3BlobStore(config):
                pass

    async def test_delete_of_a_missing_key(
        self, s3_admin: S3Client, s3_config: S3StoreConfig
    ) -> None:
        """DeleteObject of a missing key is 204 everywhere; delete() is idempotent."""
        answer = s3_admin.delete_object(Bucket=s3_config.bucket, Key="never-there")

        assert answer["ResponseMetadata"]["HTTPStatusCode"] == 204
        async with S3BlobStore(s3_config) as store:
            await store.delete(integrity_of(b"never stored"))


class TestStorageTime:
    def test_multipart_last_modified_is_the_completion(
        self, s3_admin: S3Client, s3_config: S3StoreConfig
    ) -> None:
        """A multipart object's LastModified is its completion, not its start.

        AWS documents the start (the CreateMultipartUpload); the servers
        here stamp the completion, which garbage collection's grace period
        relies on (docs/operations.md).
        """
        bucket, key = s3_config.bucket, "multipart-time"
        upload = s3_admin.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        part = s3_admin.upload_part(
            Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"x" * 1000
        )
        time.sleep(2.5)
        done = s3_admin.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
        )
        completed = email.utils.parsedate_to_datetime(
            done["ResponseMetadata"]["HTTPHeaders"]["date"]
        )

        modified = s3_admin.head_object(Bucket=bucket, Key=key)["LastModified"]

        # Both have one-second resolution: within a second of the completion.
        assert abs((modified - completed).total_seconds()) <= 1
