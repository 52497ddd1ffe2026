"""The S3 driver: keys are objects below `rootdirectory` in one bucket, laid out as distribution's
s3 driver lays them, on AWS or any S3-compatible store (`regionendpoint`).

Files are objects. An appending writer (upload data) keeps its bytes in an S3 multipart upload at
the file's key: full parts of `chunksize`, plus a tail object `<key>~tail-<n>` holding the
remainder after part n, so a chunk of any size persists between requests, and across replicas,
without a blob ever being buffered whole. The tail's name says which part it follows: after a
crash between uploading a part and rewriting the tail, the stale tail is recognised and ignored.
Reading or moving such a file first seals it (completes the multipart upload, the tail as its
last part) into an ordinary object. `~` appears in no key of the layout, so tails never list.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import BotoCoreError, ClientError

from moorage.storage.driver.base import FileInfo, PathNotFound, StorageError, register
from moorage.storage.driver.objects import PerLoop, object_key, object_path

log = logging.getLogger("moorage.storage.s3")

NAME = "s3"
MIN_CHUNK = 5 * 1024 * 1024
DEFAULT_CHUNK = 10 * 1024 * 1024
DEFAULT_COPY_CHUNK = 32 * 1024 * 1024
DEFAULT_COPY_CONCURRENCY = 100
DEFAULT_COPY_THRESHOLD = 32 * 1024 * 1024
MAX_SINGLE_COPY = 5 * 1024 * 1024 * 1024
READ_CHUNK = 1 << 20
TAIL = "~tail-"
_TAIL = re.compile(r"~tail-(\d+)$")
_MISSING = ("NoSuchKey", "404", "NotFound", "NoSuchUpload")
Parts = list[tuple[int, str, int]]  # (number, etag, size) of multipart upload parts


# distribution's s3 driver parameters. v4auth is always on and loglevel is the log's own
# (log.level), so those two are accepted and have nothing to change.
PARAMETERS = (
    "accesskey",
    "secretkey",
    "region",
    "regionendpoint",
    "forcepathstyle",
    "bucket",
    "encrypt",
    "keyid",
    "secure",
    "skipverify",
    "v4auth",
    "chunksize",
    "multipartcopychunksize",
    "multipartcopymaxconcurrency",
    "multipartcopythresholdsize",
    "rootdirectory",
    "storageclass",
    "objectacl",
    "useragent",
    "usedualstack",
    "usefipsendpoint",
    "accelerate",
    "loglevel",
)


@dataclass
class Options:
    bucket: str
    region: str
    endpoint: str | None
    accesskey: str | None
    secretkey: str | None
    rootdirectory: str
    chunksize: int
    forcepathstyle: bool
    encrypt: bool
    keyid: str
    skipverify: bool
    storageclass: str
    useragent: str
    usedualstack: bool
    usefipsendpoint: bool
    copy_chunk: int
    copy_concurrency: int
    copy_threshold: int

    @classmethod
    def parse(cls, p: dict[str, Any]) -> Options:
        unknown = sorted(str(key) for key in p if key not in PARAMETERS)
        if unknown:
            raise ValueError("; ".join(f"storage.s3.{key}: unknown key" for key in unknown))
        if str(p.get("objectacl") or "private") != "private":
            raise ValueError(
                "storage.s3.objectacl: moorage writes objects private (the bucket's policy "
                "decides who else reads them); remove the key or set private"
            )
        if _bool(p.get("accelerate", False)):
            raise ValueError("storage.s3.accelerate: S3 Transfer Acceleration is not supported")
        for key in ("bucket", "region"):
            if not p.get(key):
                raise ValueError(f"storage.s3.{key}: required")
        endpoint = p.get("regionendpoint") or None
        secure = _bool(p.get("secure", True))
        if endpoint and "://" not in endpoint:
            endpoint = f"{'https' if secure else 'http'}://{endpoint}"
        chunk = int(p.get("chunksize") or DEFAULT_CHUNK)
        if chunk < MIN_CHUNK:
            raise ValueError(f"storage.s3.chunksize: at least {MIN_CHUNK} (S3's minimum part)")
        return cls(
            bucket=str(p["bucket"]),
            region=str(p["region"]),
            endpoint=endpoint,
            accesskey=p.get("accesskey") or None,
            secretkey=p.get("secretkey") or None,
            rootdirectory=str(p.get("rootdirectory") or "").strip("/"),
            chunksize=chunk,
            forcepathstyle=_bool(p.get("forcepathstyle", False)),
            encrypt=_bool(p.get("encrypt", False)),
            keyid=str(p.get("keyid") or ""),
            skipverify=_bool(p.get("skipverify", False)),
            storageclass=str(p.get("storageclass") or "STANDARD"),
            useragent=str(p.get("useragent") or ""),
            usedualstack=_bool(p.get("usedualstack", False)),
            usefipsendpoint=_bool(p.get("usefipsendpoint", False)),
            copy_chunk=int(p.get("multipartcopychunksize") or DEFAULT_COPY_CHUNK),
            copy_concurrency=int(p.get("multipartcopymaxconcurrency") or DEFAULT_COPY_CONCURRENCY),
            copy_threshold=int(p.get("multipartcopythresholdsize") or DEFAULT_COPY_THRESHOLD),
        )


def _bool(value: Any) -> bool:
    return value.lower() in ("1", "true", "yes") if isinstance(value, str) else bool(value)


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _MISSING


@dataclass
class Pending:
    """An unsealed appended file: its multipart upload, parts, and tail."""

    upload_id: str
    parts: Parts
    tail: bytes
    tail_key: str | None

    @property
    def size(self) -> int:
        return sum(size for _, _, size in self.parts) + len(self.tail)

    @property
    def last_part(self) -> int:
        return max((number for number, _, _ in self.parts), default=0)


class S3Writer:
    def __init__(self, driver: S3Driver, path: str, pending: Pending | None, append: bool):
        self._driver = driver
        self._path = path
        self._key = driver.key(path)
        self._append = append
        self._pending = pending
        self._buffer = bytearray(pending.tail if pending else b"")
        self._size = pending.size if pending else 0

    @property
    def size(self) -> int:
        return self._size

    async def write(self, data: bytes) -> None:
        self._buffer += data
        self._size += len(data)
        chunk = self._driver.options.chunksize
        while len(self._buffer) >= chunk:
            with memoryview(self._buffer) as view:
                part = bytes(view[:chunk])  # one copy; slicing the bytearray would make two
            del self._buffer[:chunk]  # cheap: CPython drops a bytearray's head in place
            await self._upload_part(part)

    async def _upload_part(self, data: bytes) -> None:
        if self._pending is None:
            upload_id = await self._driver.start_multipart(self._key)
            self._pending = Pending(upload_id, [], b"", None)
        number = self._pending.last_part + 1
        etag = await self._driver.upload_part(self._key, self._pending.upload_id, number, data)
        self._pending.parts.append((number, etag, len(data)))

    async def commit(self) -> None:
        """Fresh writer: the object appears. Appending writer: the bytes persist (parts and a
        tail) and the file stays open for the next append."""
        if not self._append:
            if self._pending is None:
                await self._driver.put_object(self._key, bytes(self._buffer))
            else:
                if self._buffer:
                    await self._upload_part(bytes(self._buffer))
                await self._driver.complete(self._key, self._pending)
            return
        if self._pending is None:  # a new file: it exists, unsealed, from now on
            upload_id = await self._driver.start_multipart(self._key)
            self._pending = Pending(upload_id, [], b"", None)
        await self._driver.write_tail(self._key, self._pending, bytes(self._buffer))

    async def cancel(self) -> None:
        if self._append:
            await self.commit()  # an appending writer's bytes are kept (the driver contract)
        elif self._pending is not None:
            await self._driver.abort(self._key, self._pending.upload_id)


_session: AioSession | None = None


def shared_session() -> AioSession:
    """The process's botocore session: its loader keeps the service data every client needs
    (tens of MB), loaded once per process, and once for all workers after `preload`."""
    global _session
    if _session is None:
        _session = get_session()
    return _session


class S3Driver:
    name = NAME

    def __init__(self, options: Options) -> None:
        self.options = options
        self._clients = PerLoop(self._make_client)

    def key(self, path: str) -> str:
        return object_key(self.options.rootdirectory, path)

    def s3_bucket_key(self, path: str) -> str:
        """The object key of a path, which a CloudFront distribution in front of the bucket
        serves (middleware.S3BucketKeyer)."""
        return self.key(path)

    def _path(self, key: str) -> str:
        return object_path(self.options.rootdirectory, key)

    async def client(self) -> Any:
        """The running loop's S3 client, made on first use."""
        return (await self._clients.get())[1]

    async def _make_client(self) -> tuple[AsyncExitStack, Any]:
        o = self.options
        config = AioConfig(
            # No SHA-256 of every part for the signature (9% of an upload's CPU over plain
            # HTTP; parts keep their CRC32), and no CRC32 of every download (a quarter of a
            # proxied pull's CPU): blob content is verified by digest, by moorage on upload and
            # by clients on pull, as distribution relies on too.
            s3={
                "addressing_style": "path" if o.forcepathstyle else "auto",
                "payload_signing_enabled": False,
            },
            response_checksum_validation="when_required",
            # Presigned URLs too (botocore signs them with v2 in us-east-1 otherwise, which
            # buckets made since 2020 refuse): `v4auth` is always on.
            signature_version="s3v4",
            user_agent_extra=o.useragent or None,
            use_dualstack_endpoint=o.usedualstack or None,
            use_fips_endpoint=o.usefipsendpoint or None,
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=max(50, o.copy_concurrency),
        )
        # A plain-HTTP endpoint has no TLS to verify; not loading a CA bundle there keeps a
        # bad AWS_CA_BUNDLE in the environment from breaking it.
        plain = bool(o.endpoint and o.endpoint.startswith("http://"))
        stack = AsyncExitStack()
        client = await stack.enter_async_context(
            shared_session().create_client(
                "s3",
                region_name=o.region,
                endpoint_url=o.endpoint,
                aws_access_key_id=o.accesskey,
                aws_secret_access_key=o.secretkey,
                verify=False if plain or o.skipverify else None,
                config=config,
            )
        )
        return stack, client

    def preload(self) -> None:
        """Makes (and closes) a client on a loop of its own, which loads the service data into
        the shared session; connects to nothing."""

        async def make_and_close() -> None:
            await self.client()
            await self.close()

        asyncio.run(make_and_close())

    async def close(self) -> None:
        made = await self._clients.pop()
        if made is not None:
            await made[0].aclose()

    def _put_extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.options.encrypt:
            extra["ServerSideEncryption"] = "aws:kms" if self.options.keyid else "AES256"
            if self.options.keyid:
                extra["SSEKMSKeyId"] = self.options.keyid
        if self.options.storageclass.upper() != "NONE":
            extra["StorageClass"] = self.options.storageclass
        return extra

    async def _call(self, operation: str, path: str, **kwargs: Any) -> Any:
        """One S3 call; a missing key is PathNotFound, anything else a StorageError."""
        client = await self.client()
        try:
            return await getattr(client, operation)(Bucket=self.options.bucket, **kwargs)
        except ClientError as exc:
            if _missing(exc):
                raise PathNotFound(NAME, path) from exc
            raise StorageError(NAME, f"{operation} {path}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(NAME, f"{operation} {path}: {exc}") from exc

    async def put_object(self, key: str, data: bytes) -> None:
        await self._call("put_object", key, Key=key, Body=data, **self._put_extra())

    async def start_multipart(self, key: str) -> str:
        answer = await self._call("create_multipart_upload", key, Key=key, **self._put_extra())
        return str(answer["UploadId"])

    async def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        answer = await self._call(
            "upload_part", key, Key=key, UploadId=upload_id, PartNumber=number, Body=data
        )
        return str(answer["ETag"])

    async def complete(self, key: str, pending: Pending) -> None:
        parts = [{"PartNumber": n, "ETag": etag} for n, etag, _ in sorted(pending.parts)]
        await self._call(
            "complete_multipart_upload",
            key,
            Key=key,
            UploadId=pending.upload_id,
            MultipartUpload={"Parts": parts},
        )

    async def abort(self, key: str, upload_id: str) -> None:
        with contextlib.suppress(PathNotFound):
            await self._call("abort_multipart_upload", key, Key=key, UploadId=upload_id)

    async def write_tail(self, key: str, pending: Pending, tail: bytes) -> None:
        """Records `tail` as what follows the last part, replacing the previous tail. Every
        unsealed file has a tail object, empty or not: it is what marks the file unsealed."""
        name = f"{key}{TAIL}{pending.last_part}"
        await self.put_object(name, tail)
        if pending.tail_key and pending.tail_key != name:
            with contextlib.suppress(PathNotFound):
                await self._call("delete_object", pending.tail_key, Key=pending.tail_key)
        pending.tail, pending.tail_key = tail, name

    async def _unsealed(self, key: str) -> bool:
        listed = await self._call("list_objects_v2", key, Prefix=key + TAIL, MaxKeys=1)
        return bool(listed.get("Contents"))

    async def pending(self, key: str) -> Pending | None:
        """The unsealed appended file at `key`, if there is one."""
        answer = await self._call("list_multipart_uploads", key, Prefix=key)
        uploads = [u for u in answer.get("Uploads", []) if u["Key"] == key]
        if not uploads:
            return None
        upload = max(uploads, key=lambda u: u["Initiated"])
        parts: Parts = []
        marker = 0
        while True:
            listed = await self._call(
                "list_parts", key, Key=key, UploadId=upload["UploadId"], PartNumberMarker=marker
            )
            parts += [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed.get("Parts", [])]
            if not listed.get("IsTruncated"):
                break
            marker = listed["NextPartNumberMarker"]
        found = Pending(str(upload["UploadId"]), parts, b"", None)
        tails = await self._call("list_objects_v2", key, Prefix=key + TAIL)
        for item in tails.get("Contents", []):
            match = _TAIL.search(item["Key"])
            if match and int(match.group(1)) == found.last_part:
                body = await self._call("get_object", item["Key"], Key=item["Key"])
                async with body["Body"] as stream:
                    found.tail = await stream.read()
                found.tail_key = item["Key"]
        return found

    async def seal(self, path: str) -> None:
        """Turns an unsealed appended file into an ordinary object (no-op for any other)."""
        key = self.key(path)
        pending = await self.pending(key) if await self._unsealed(key) else None
        if pending is None:
            return
        if pending.tail or not pending.parts:
            number = pending.last_part + 1
            etag = await self.upload_part(key, pending.upload_id, number, pending.tail)
            pending.parts.append((number, etag, len(pending.tail)))
        await self.complete(key, pending)
        await self._delete_tails(key)

    async def _delete_tails(self, key: str) -> None:
        tails = await self._call("list_objects_v2", key, Prefix=key + TAIL)
        for item in tails.get("Contents", []):
            with contextlib.suppress(PathNotFound):
                await self._call("delete_object", item["Key"], Key=item["Key"])

    # -- the driver contract --------------------------------------------------------------

    async def get_content(self, path: str) -> bytes:
        key = self.key(path)
        try:
            answer = await self._call("get_object", path, Key=key)
        except PathNotFound:
            await self.seal(path)
            answer = await self._call("get_object", path, Key=key)
        async with answer["Body"] as stream:
            return bytes(await stream.read())

    async def put_content(self, path: str, content: bytes) -> None:
        await self.put_object(self.key(path), content)

    async def _object_size(self, path: str) -> int:
        """The size of the object at `path`, sealing an unsealed file there first."""
        key = self.key(path)
        try:
            head = await self._call("head_object", path, Key=key)
        except PathNotFound:
            await self.seal(path)
            head = await self._call("head_object", path, Key=key)
        return int(head["ContentLength"])

    async def reader(self, path: str, offset: int = 0) -> AsyncIterator[bytes]:
        key = self.key(path)
        if offset >= await self._object_size(path) and offset:
            return
        kwargs: dict[str, Any] = {"Key": key}
        if offset:
            kwargs["Range"] = f"bytes={offset}-"
        answer = await self._call("get_object", path, **kwargs)
        async with answer["Body"] as stream:
            while chunk := await stream.read(READ_CHUNK):
                yield bytes(chunk)

    async def writer(self, path: str, *, append: bool = False) -> S3Writer:
        key = self.key(path)
        pending = None
        if append:
            pending = await self.pending(key) if await self._unsealed(key) else None
            if pending is None:
                pending = await self._reopen(path)
        return S3Writer(self, path, pending, append)

    async def _reopen(self, path: str) -> Pending | None:
        """Turns a sealed object back into an unsealed file to append to (server-side copy of
        its bytes as the first part, or a small one as the tail); None when there is none.
        The object goes only once the unsealed file holds the same bytes, so a stat in
        between sees the same size."""
        key = self.key(path)
        try:
            head = await self._call("head_object", path, Key=key)
        except PathNotFound:
            return None
        size = int(head["ContentLength"])
        pending = Pending(await self.start_multipart(key), [], b"", None)
        if size >= MIN_CHUNK:
            pending.parts = await self._copy_parts(key, key, pending.upload_id, size)
            await self.write_tail(key, pending, b"")
        else:
            answer = await self._call("get_object", path, Key=key)
            async with answer["Body"] as stream:
                await self.write_tail(key, pending, bytes(await stream.read()))
        await self._call("delete_object", path, Key=key)
        return pending

    async def stat(self, path: str) -> FileInfo:
        key = self.key(path)
        try:
            head = await self._call("head_object", path, Key=key)
            return FileInfo(
                path, int(head["ContentLength"]), head["LastModified"].timestamp(), False
            )
        except PathNotFound:
            pass
        pending = await self.pending(key) if await self._unsealed(key) else None
        if pending is not None:
            return FileInfo(path, pending.size, 0.0, False)
        listed = await self._call("list_objects_v2", path, Prefix=key.rstrip("/") + "/", MaxKeys=1)
        contents = listed.get("Contents", [])
        if not contents:
            raise PathNotFound(NAME, path)
        return FileInfo(path, 0, contents[0]["LastModified"].timestamp(), True)

    async def _pages(
        self, path: str, prefix: str, delimiter: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Every page of a listing of the keys under `prefix` (ListObjectsV2's answers, a
        thousand keys each), the continuation followed."""
        kwargs: dict[str, Any] = {"Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        while True:
            listed = await self._call("list_objects_v2", path, **kwargs)
            yield listed
            if not listed.get("IsTruncated"):
                return
            kwargs["ContinuationToken"] = listed["NextContinuationToken"]

    async def walk(self, path: str) -> AsyncIterator[FileInfo]:
        """One listing of every key below the prefix, a thousand a request. An appended file
        shows the size of its base object only (its tails and open part are left out)."""
        async for listed in self._pages(path, self.key(path).rstrip("/") + "/"):
            for item in listed.get("Contents", []):
                key = item["Key"]
                if key.endswith("/") or "~" in key.rpartition("/")[2]:
                    continue  # a store's directory key, or an appended file's tail
                yield FileInfo(
                    self._path(key), int(item["Size"]), item["LastModified"].timestamp(), False
                )

    async def files_named(self, path: str, name: str) -> AsyncIterator[FileInfo]:
        """One listing of everything below, as walk."""
        prefix = path.rstrip("/") + "/"
        async for info in self.walk(path):
            parts = info.path[len(prefix) :].split("/")
            if len(parts) == 2 and parts[1] == name:
                yield info

    async def list(self, path: str) -> list[str]:
        prefix = self.key(path).rstrip("/") + "/"
        children: list[str] = []
        async for listed in self._pages(path, prefix, delimiter="/"):
            for item in listed.get("Contents", []):
                if item["Key"] != prefix:  # the directory's own `dir/` key, on some stores
                    children.append(item["Key"].rstrip("/"))
            for common in listed.get("CommonPrefixes", []):
                children.append(common["Prefix"].rstrip("/"))
        if not children:
            raise PathNotFound(NAME, path)
        names = [key for key in children if "~" not in key.rpartition("/")[2]]  # not tails
        if not names:
            raise PathNotFound(NAME, path)
        return [self._path(key) for key in names]

    async def move(self, source: str, dest: str) -> None:
        size = await self._object_size(source)
        src_key, dst_key = self.key(source), self.key(dest)
        if src_key == dst_key:
            return
        if size <= self.options.copy_threshold and size <= MAX_SINGLE_COPY:
            await self._call(
                "copy_object",
                source,
                Key=dst_key,
                CopySource={"Bucket": self.options.bucket, "Key": src_key},
                **self._put_extra(),
            )
        else:
            await self._multipart_copy(src_key, dst_key, size)
        await self._call("delete_object", source, Key=src_key)

    async def touch(self, path: str) -> None:
        """Copies the object onto itself with its metadata replaced, which S3 allows and which
        gives it a new LastModified; in parts beyond the single-copy limit, as a move does."""
        size = await self._object_size(path)
        key = self.key(path)
        if size <= self.options.copy_threshold and size <= MAX_SINGLE_COPY:
            await self._call(
                "copy_object",
                path,
                Key=key,
                CopySource={"Bucket": self.options.bucket, "Key": key},
                MetadataDirective="REPLACE",
                **self._put_extra(),
            )
        else:
            await self._multipart_copy(key, key, size)

    async def prune(self, path: str, top: str) -> None:
        """Objects need no directories, but stores with a directory tree (SeaweedFS) list an
        emptied directory as a common prefix until its `dir/` key is deleted, and refuse to
        delete one that is not empty: those keys are deleted, deepest first."""
        if await self._prune(self.key(path).rstrip("/") + "/"):
            parent = path.rpartition("/")[0]
            while parent.startswith(top + "/"):
                prefix = self.key(parent).rstrip("/") + "/"
                listed = await self._call("list_objects_v2", parent, Prefix=prefix, MaxKeys=2)
                if any(item["Key"] != prefix for item in listed.get("Contents", [])):
                    return
                if listed.get("CommonPrefixes") or not await self._prune(prefix):
                    return
                parent = parent.rpartition("/")[0]

    async def _prune(self, prefix: str) -> bool:
        """Deletes the empty directory keys at and below `prefix` (ending in `/`); whether
        nothing is left below it."""
        empty = True
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Prefix": prefix, "Delimiter": "/"}
            if token:
                kwargs["ContinuationToken"] = token
            listed = await self._call("list_objects_v2", prefix, **kwargs)
            if any(item["Key"] != prefix for item in listed.get("Contents", [])):
                empty = False
            for common in listed.get("CommonPrefixes", []):
                if not await self._prune(common["Prefix"]):
                    empty = False
            if not listed.get("IsTruncated"):
                break
            token = listed["NextContinuationToken"]
        if empty:
            with contextlib.suppress(PathNotFound):
                await self._call("delete_object", prefix, Key=prefix)
        return empty

    async def _multipart_copy(self, src_key: str, dst_key: str, size: int) -> None:
        upload_id = await self.start_multipart(dst_key)
        try:
            parts = await self._copy_parts(src_key, dst_key, upload_id, size)
            await self.complete(dst_key, Pending(upload_id, parts, b"", None))
        except BaseException:
            await self.abort(dst_key, upload_id)
            raise

    async def _copy_parts(self, src_key: str, dst_key: str, upload_id: str, size: int) -> Parts:
        """Copies `src_key` server-side into parts 1.. of a multipart upload at `dst_key`."""
        chunk = max(self.options.copy_chunk, MIN_CHUNK, -(-size // 10_000))
        gate = asyncio.Semaphore(self.options.copy_concurrency)

        async def copy_part(number: int, first: int) -> tuple[int, str, int]:
            last = min(first + chunk, size) - 1
            async with gate:
                answer = await self._call(
                    "upload_part_copy",
                    dst_key,
                    Key=dst_key,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource={"Bucket": self.options.bucket, "Key": src_key},
                    CopySourceRange=f"bytes={first}-{last}",
                )
            return number, str(answer["CopyPartResult"]["ETag"]), last - first + 1

        parts = await asyncio.gather(
            *(copy_part(i + 1, first) for i, first in enumerate(range(0, size, chunk)))
        )
        return list(parts)

    async def delete(self, path: str) -> None:
        key = self.key(path)
        doomed: list[str] = []
        with contextlib.suppress(PathNotFound):
            await self._call("head_object", path, Key=key)
            doomed.append(key)
        prefixes = [key.rstrip("/") + "/", key + TAIL]
        for prefix in prefixes:
            async for listed in self._pages(path, prefix):
                doomed += [item["Key"] for item in listed.get("Contents", [])]
        aborted = await self._abort_below(key)
        if not doomed and not aborted:
            raise PathNotFound(NAME, path)
        for start in range(0, len(doomed), 1000):
            batch = [{"Key": k} for k in doomed[start : start + 1000]]
            await self._call("delete_objects", path, Delete={"Objects": batch, "Quiet": True})
        # Stores with a directory tree (SeaweedFS) keep emptied directories until their `dir/`
        # key is deleted; on AWS those keys do not exist and the deletes are no-ops.
        directories = {key + "/"}
        for doomed_key in doomed:
            parent = doomed_key.rpartition("/")[0]
            while parent.startswith(key + "/"):
                directories.add(parent + "/")
                parent = parent.rpartition("/")[0]
        for directory in sorted(directories, key=lambda d: d.count("/"), reverse=True):
            with contextlib.suppress(PathNotFound, StorageError):
                await self._call("delete_object", path, Key=directory)

    async def _abort_below(self, key: str) -> int:
        answer = await self._call("list_multipart_uploads", key, Prefix=key)
        uploads = [
            u
            for u in answer.get("Uploads", [])
            if u["Key"] == key or u["Key"].startswith(key + "/")
        ]
        for upload in uploads:
            await self.abort(upload["Key"], upload["UploadId"])
        return len(uploads)

    def local_file(self, path: str) -> str | None:
        return None

    async def redirect_url(self, path: str, expires: int = 1200) -> str | None:
        """A presigned GET URL, valid for `expires` seconds."""
        client = await self.client()
        url: str = await client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.options.bucket, "Key": self.key(path)},
            ExpiresIn=expires,
        )
        return url


def create(parameters: dict[str, Any]) -> S3Driver:
    return S3Driver(Options.parse(parameters))


register(NAME, create)
