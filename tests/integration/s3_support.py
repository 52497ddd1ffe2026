"""Helpers for the tests on the session's SeaweedFS: a client of the store, and buckets made for
one test and removed after it.

SeaweedFS gives each bucket a collection of 7 volumes the first time it is written, and the
session's store has 20: a test that leaves its bucket behind takes volumes from the next ones.
So every bucket made here is emptied and deleted (which frees its volumes) when the test ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from tests.servers import S3Server


def s3_client(s3: S3Server) -> Any:
    """An aiobotocore S3 client of the store (an async context manager)."""
    from aiobotocore.session import get_session

    return get_session().create_client(
        "s3",
        endpoint_url=s3.endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIATESTTESTTESTTEST",
        aws_secret_access_key="test-secret-key-for-the-local-store",
        verify=False,
    )


async def list_multipart_uploads(s3: S3Server, bucket: str, prefix: str) -> list[dict[str, Any]]:
    async with s3_client(s3) as client:
        answer = await client.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
        return list(answer.get("Uploads", []))


async def list_objects(s3: S3Server, bucket: str, prefix: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    async with s3_client(s3) as client:
        paginator = client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            found += page.get("Contents", [])
    return found


async def get_object(s3: S3Server, bucket: str, key: str) -> tuple[bytes, str]:
    """The object's bytes and ETag."""
    async with s3_client(s3) as client:
        answer = await client.get_object(Bucket=bucket, Key=key)
        async with answer["Body"] as stream:
            return bytes(await stream.read()), str(answer["ETag"])


async def _remove_bucket(s3: S3Server, bucket: str) -> None:
    async with s3_client(s3) as client:
        uploads = await client.list_multipart_uploads(Bucket=bucket)
        for upload in uploads.get("Uploads", []):
            await client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        paginator = client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=bucket):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                await client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        await client.delete_bucket(Bucket=bucket)


@contextlib.contextmanager
def bucket(s3: S3Server, name: str) -> Iterator[str]:
    """A bucket for the duration of the block, emptied and deleted after it."""
    s3.create_bucket(name)
    try:
        yield name
    finally:
        asyncio.run(_remove_bucket(s3, name))
