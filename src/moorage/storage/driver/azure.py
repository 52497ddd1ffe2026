"""The Azure Blob Storage driver: keys are blobs below `rootdirectory` in one container, laid out
as distribution's azure driver lays them, so a container moves between the two registries.

Files are block blobs, written whole (`put_content`) or in staged blocks made visible together
(a fresh writer). An appending writer (upload data) writes an append blob, as distribution's
does, 4 MiB blocks at a time, each appended at the position the writer expects: the blob is the
file at every moment and either registry continues the other's session. Appending to a block
blob first turns it into an append blob with the same bytes (via a copy beside it).

Credentials are distribution's: `accountname` and `accountkey` (shared key, the default),
`credentials.type: client_secret` (an Azure AD application: `clientid`, `tenantid`, `secret`),
or `credentials.type: default_credentials` (the environment, workload or managed identity), or
moorage's `connectionstring`. Redirect URLs are SAS URLs, signed with the account key or with
a user delegation key for Azure AD credentials. `max_retries` and `retry_delay` bound the
waits distribution bounds with them: for a server-side copy to finish, and the checks after an
append whose answer was lost.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import io
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.storage.blob import (
    BlobBlock,
    BlobSasPermissions,
    BlobType,
    UserDelegationKey,
    generate_blob_sas,
)
from azure.storage.blob.aio import BlobClient, BlobServiceClient, ContainerClient

from moorage.storage.driver.base import FileInfo, PathNotFound, StorageError, register
from moorage.storage.driver.chunks import Chunks
from moorage.storage.driver.objects import PerLoop, object_key, object_path
from moorage.storage.driver.params import Parameters

# The SDK logs every request and response at info; moorage's access log and errors say enough.
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)

NAME = "azure"
BLOCK = 4 * 1024 * 1024  # an appended or staged block, and a read chunk
SDK_PUT = 1024 * 1024
READ_CHUNK = 1024 * 1024
DEFAULT_REALM = "core.windows.net"
REDIRECT_EXPIRY = datetime.timedelta(minutes=20)  # as distribution's
DELEGATION_LIFETIME = datetime.timedelta(hours=48)
DELEGATION_MARGIN = datetime.timedelta(minutes=30)
DELETE_CONCURRENCY = 32
TOUCHED = "moorage_touched"  # the metadata key a touch sets (a C# identifier, as Azure wants)
REOPENED = "~reopen"  # beside a block blob being turned into an append blob; no key has `~`
SHARED_KEY, CLIENT_SECRET, DEFAULT_CREDENTIALS = (
    "shared_key",
    "client_secret",
    "default_credentials",
)
KEYS = (
    "accountname",
    "accountkey",
    "container",
    "credentials",
    "connectionstring",
    "realm",
    "rootdirectory",
    "serviceurl",
    "max_retries",
    "retry_delay",
    "skipverify",
    # distribution 3's pre-releases named max_retries and retry_delay so
    "copy_status_poll_max_retry",
    "copy_status_poll_delay",
)
CREDENTIAL_KEYS = ("type", "clientid", "tenantid", "secret")
T = TypeVar("T")


@dataclass
class Options:
    container: str
    accountname: str
    accountkey: str
    # SHARED_KEY, CLIENT_SECRET or DEFAULT_CREDENTIALS; "" with a connection string
    credentials: str
    clientid: str
    tenantid: str
    secret: str
    connectionstring: str
    serviceurl: str
    rootdirectory: str
    max_retries: int  # -1: a copy that does not finish at once fails
    retry_delay: float  # seconds, times the attempt's number
    skipverify: bool

    @classmethod
    def parse(cls, values: dict[str, Any]) -> Options:
        p = Parameters(NAME, values, KEYS)
        container = p.text("container", required=True)
        connection = p.text("connectionstring")
        nested = p.mapping("credentials", CREDENTIAL_KEYS)
        kind = nested.text("type", required=True) if nested else ""
        if kind and kind not in (SHARED_KEY, CLIENT_SECRET, DEFAULT_CREDENTIALS):
            raise ValueError(
                f"storage.azure.credentials.type: {kind!r}; expected {SHARED_KEY}, "
                f"{CLIENT_SECRET} or {DEFAULT_CREDENTIALS}"
            )
        if not kind and not connection:
            kind = SHARED_KEY  # distribution 2's form: accountname and accountkey alone
        needs_account = kind == SHARED_KEY or not (p.given("serviceurl") or connection)
        account = p.text("accountname", required=needs_account)
        if kind and connection:
            raise ValueError("storage.azure.connectionstring: give it or credentials, not both")
        if kind == SHARED_KEY:
            p.text("accountkey", required=True)
        if kind == CLIENT_SECRET:
            assert nested is not None
            for key in ("clientid", "tenantid", "secret"):
                nested.text(key, required=True)
        url = p.text("serviceurl").rstrip("/")
        if url and urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("storage.azure.serviceurl: expected an http:// or https:// URL")
        if not url and not connection:
            url = f"https://{account}.blob.{p.text('realm', DEFAULT_REALM)}"
        retries = p.integer("copy_status_poll_max_retry", 5)
        delay = p.duration("copy_status_poll_delay", "100ms")
        return cls(
            container=container,
            accountname=account,
            accountkey=p.text("accountkey") if kind == SHARED_KEY else "",
            credentials=kind,
            clientid=nested.text("clientid") if nested else "",
            tenantid=nested.text("tenantid") if nested else "",
            secret=nested.text("secret") if nested else "",
            connectionstring=connection,
            serviceurl=url,
            rootdirectory=p.text("rootdirectory").strip("/"),
            max_retries=p.integer("max_retries", 0) or retries,  # 0: the default, as there
            retry_delay=p.duration("retry_delay", f"{delay}s"),
            skipverify=p.boolean("skipverify", False),
        )


def _code(exc: BaseException) -> str:
    return str(getattr(exc, "error_code", "") or "")


@dataclass
class Client:
    """One event loop's connections."""

    service: BlobServiceClient
    container: ContainerClient
    credential: Any  # an azure.identity credential to close, or None


class AzureWriter:
    """A fresh writer stages blocks and commits their list; an appending one appends blocks to
    an append blob as they fill."""

    def __init__(self, driver: AzureDriver, name: str, size: int | None, append: bool):
        self._driver = driver
        self._name = name
        self._append = append
        self._exists = size is not None  # the append blob is there already
        self._stored = size or 0  # bytes in the blob (appending) or in staged blocks
        self._blocks: list[str] = []
        self._buffer = Chunks()

    @property
    def size(self) -> int:
        return self._stored + len(self._buffer)

    async def write(self, data: bytes) -> None:
        self._buffer.append(data)
        while len(self._buffer) >= BLOCK:
            await self._flush(BLOCK)

    async def _flush(self, length: int) -> None:
        taken = self._buffer.take(length)
        block = b"".join(taken)
        try:
            if self._append:
                if not self._exists:
                    await self._driver.create_append_blob(self._name)
                    self._exists = True
                if block:
                    await self._driver.append(self._name, block, self._stored)
            else:
                block_id = base64.b64encode(uuid.uuid4().hex.encode()).decode()
                await self._driver.stage(self._name, block_id, block)
                self._blocks.append(block_id)
        except BaseException:
            self._buffer.put_back(taken)
            raise
        self._stored += length

    async def commit(self) -> None:
        """Fresh writer: the blob appears. Appending writer: the bytes are in the blob."""
        if self._append:
            if self._buffer or not self._exists:
                await self._flush(len(self._buffer))
        elif not self._blocks:
            await self._driver.put_block_blob(self._name, self._buffer.value())
        else:
            if self._buffer:
                await self._flush(len(self._buffer))
            await self._driver.commit_blocks(self._name, self._blocks)

    async def cancel(self) -> None:
        """An appending writer's bytes are kept (the driver contract); a fresh writer's staged
        blocks are dropped by the service, never committed."""
        if self._append:
            await self.commit()


class AzureDriver:
    name = NAME

    def __init__(self, options: Options) -> None:
        self.options = options
        # One client per event loop: aiohttp sessions belong to the loop that made them.
        self._clients = PerLoop(self._make_client)
        self._delegation: tuple[UserDelegationKey, datetime.datetime] | None = None

    def blob_name(self, path: str) -> str:
        return object_key(self.options.rootdirectory, path)

    def _path(self, name: str) -> str:
        return object_path(self.options.rootdirectory, name)

    async def client(self) -> Client:
        """The running loop's client, made on first use."""
        return await self._clients.get()

    async def _make_client(self) -> Client:
        o = self.options
        settings: dict[str, Any] = {
            "max_single_get_size": BLOCK,  # a read holds one chunk at a time
            "max_chunk_get_size": BLOCK,
            # Whole-blob uploads above 1 MiB go in staged blocks of 1 MiB: the library sends
            # each as bytes, which aiohttp warns against above that size.
            "max_single_put_size": SDK_PUT,
            "max_block_size": SDK_PUT,
            "connection_verify": not o.skipverify,
        }
        credential: Any = None
        if o.connectionstring:
            service = BlobServiceClient.from_connection_string(o.connectionstring, **settings)
        else:
            if o.credentials == SHARED_KEY:
                key: Any = {"account_name": o.accountname, "account_key": o.accountkey}
            elif o.credentials == CLIENT_SECRET:
                from azure.identity.aio import ClientSecretCredential

                key = credential = ClientSecretCredential(o.tenantid, o.clientid, o.secret)
            else:
                from azure.identity.aio import DefaultAzureCredential

                key = credential = DefaultAzureCredential()
            service = BlobServiceClient(o.serviceurl, credential=key, **settings)
        return Client(service, service.get_container_client(o.container), credential)

    def preload(self) -> None:
        """Nothing to load: the client library is loaded with this module."""

    async def close(self) -> None:
        client = await self._clients.pop()
        if client is not None:
            await client.service.close()
            if client.credential is not None:
                await client.credential.close()

    async def _call(self, what: str, path: str, operation: Callable[[Client], Awaitable[T]]) -> T:
        """One operation; a missing blob is PathNotFound, anything else a StorageError."""
        client = await self.client()
        try:
            return await operation(client)
        except ResourceNotFoundError as exc:
            if _code(exc) == "ContainerNotFound":
                raise StorageError(
                    NAME, f"{what} {path}: container {self.options.container!r} does not exist"
                ) from exc
            raise PathNotFound(NAME, path) from exc
        except AzureError as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StorageError(NAME, f"{what} {path}: {message}") from exc

    def _blob(self, client: Client, name: str) -> BlobClient:
        return client.container.get_blob_client(name)

    # -- blobs --------------------------------------------------------------------------------

    async def put_block_blob(self, name: str, data: bytes) -> None:
        """Writes a whole block blob, replacing what is there in one request; an append blob
        there (distribution's once, or upload data) must be deleted first, as distribution
        does."""

        async def put(client: Client) -> None:
            blob = self._blob(client, name)
            try:
                await blob.upload_blob(_body(data), BlobType.BLOCKBLOB, len(data), overwrite=True)
            except HttpResponseError as exc:
                if _code(exc) != "InvalidBlobType":
                    raise
                await blob.delete_blob()
                await blob.upload_blob(_body(data), BlobType.BLOCKBLOB, len(data), overwrite=True)

        await self._call("write", self._path(name), put)

    async def stage(self, name: str, block_id: str, data: bytes) -> None:
        async def stage(client: Client) -> None:
            blob = self._blob(client, name)
            try:
                await blob.stage_block(block_id, _body(data), len(data))
            except HttpResponseError as exc:
                if _code(exc) != "InvalidBlobType":
                    raise
                # An append blob is there: it cannot take blocks, and is replaced now rather
                # than when the writer commits.
                await blob.delete_blob()
                await blob.stage_block(block_id, _body(data), len(data))

        await self._call("write", self._path(name), stage)

    async def commit_blocks(self, name: str, blocks: list[str]) -> None:
        async def commit(client: Client) -> None:
            await self._blob(client, name).commit_block_list([BlobBlock(b) for b in blocks])

        await self._call("write", self._path(name), commit)

    async def create_append_blob(self, name: str) -> None:
        """Creates an empty append blob, unless a blob is there already."""

        async def create(client: Client) -> None:
            with contextlib.suppress(ResourceExistsError):  # there already: it is the file
                await self._blob(client, name).create_append_blob(
                    match_condition=MatchConditions.IfMissing
                )

        await self._call("write", self._path(name), create)

    async def append(self, name: str, block: bytes, position: int) -> None:
        """Appends a block where the blob ends at `position`. When an append's answer was lost
        and the client library sent it again, the second is refused (the blob is longer): the
        bytes then at the position are compared with the block, as distribution does."""

        async def append(client: Client) -> None:
            blob = self._blob(client, name)
            try:
                await blob.append_block(_body(block), len(block), appendpos_condition=position)
            except HttpResponseError as exc:
                if _code(exc) != "AppendPositionConditionNotMet":
                    raise
                size = (await blob.get_blob_properties()).size
                if size == position + len(block):
                    stored = await blob.download_blob(offset=position, length=len(block))
                    if await stored.readall() == block:
                        return
                raise StorageError(
                    NAME,
                    f"append to {self._path(name)}: the blob holds {size} bytes, "
                    f"expected {position}",
                ) from exc

        await self._call("append", self._path(name), append)

    async def _properties(self, name: str, path: str) -> Any:
        async def get(client: Client) -> Any:
            return await self._blob(client, name).get_blob_properties()

        return await self._call("stat", path, get)

    async def _copy(self, source: str, dest: str, path: str) -> None:
        """Copies blob `source` to `dest` server-side (the same type of blob), waiting for the
        copy to finish: up to `max_retries` checks, `retry_delay` times the check's number
        apart, as distribution waits."""
        url = await self._signed(source)

        async def copy(client: Client) -> None:
            blob = self._blob(client, dest)
            try:
                answer = await blob.start_copy_from_url(url)
            except HttpResponseError as exc:
                if _code(exc) != "InvalidBlobType":
                    raise
                await blob.delete_blob()  # a blob of another type cannot be copied over
                answer = await blob.start_copy_from_url(url)
            status: Any = answer["copy_status"]
            attempt = 0
            while status == "pending":
                attempt += 1
                if attempt > self.options.max_retries:
                    with contextlib.suppress(HttpResponseError):
                        await blob.abort_copy(str(answer["copy_id"]))
                    raise StorageError(NAME, f"copy to {self._path(dest)} did not finish")
                await asyncio.sleep(self.options.retry_delay * attempt)
                status = (await blob.get_blob_properties()).copy.status
            if status != "success":
                raise StorageError(NAME, f"copy to {self._path(dest)} ended {status}")

        await self._call("copy", path, copy)

    async def _signed(self, name: str) -> str:
        """The blob's URL with a read SAS, when the credentials can sign one; its bare URL
        otherwise (a same-account copy is authorized by the request's credentials)."""
        client = await self.client()
        url: str = self._blob(client, name).url
        signature = await self._signature(client, name)
        return f"{url}?{signature}" if signature else url

    async def _signature(self, client: Client, name: str) -> str | None:
        now = datetime.datetime.now(datetime.UTC)
        common: dict[str, Any] = {
            "account_name": self.options.accountname or client.service.account_name,
            "container_name": self.options.container,
            "blob_name": name,
            "permission": BlobSasPermissions(read=True),
            "start": now - datetime.timedelta(seconds=10),
            "expiry": now + REDIRECT_EXPIRY,
            "protocol": "https" if client.service.url.startswith("https:") else "https,http",
        }
        key = getattr(client.service.credential, "account_key", None)
        if key:
            return str(generate_blob_sas(account_key=key, **common))
        if self.options.credentials in (CLIENT_SECRET, DEFAULT_CREDENTIALS):
            delegation = await self._delegation_key(client)
            return str(generate_blob_sas(user_delegation_key=delegation, **common))
        return None

    async def _delegation_key(self, client: Client) -> UserDelegationKey:
        """A user delegation key (Azure AD credentials sign SAS URLs with it), kept for 48
        hours and renewed half an hour before it expires, as distribution does."""
        now = datetime.datetime.now(datetime.UTC)
        if self._delegation is None or self._delegation[1] - now < DELEGATION_MARGIN:
            start = now - datetime.timedelta(seconds=10)

            async def get(client: Client) -> UserDelegationKey:
                return await client.service.get_user_delegation_key(
                    start, start + DELEGATION_LIFETIME
                )

            key = await self._call("sign", "/", get)
            self._delegation = (key, start + DELEGATION_LIFETIME)
        return self._delegation[0]

    # -- the driver contract ------------------------------------------------------------------

    async def get_content(self, path: str) -> bytes:
        async def get(client: Client) -> bytes:
            stream = await self._blob(client, self.blob_name(path)).download_blob()
            return await stream.readall()

        return await self._call("read", path, get)

    async def put_content(self, path: str, content: bytes) -> None:
        await self.put_block_blob(self.blob_name(path), content)

    async def reader(self, path: str, offset: int = 0) -> AsyncIterator[bytes]:
        async def start(client: Client) -> Any:
            try:
                return await self._blob(client, self.blob_name(path)).download_blob(
                    offset=offset or None
                )
            except HttpResponseError as exc:
                if exc.status_code == 416:  # at or past the end
                    return None
                raise

        stream = await self._call("read", path, start)
        if stream is None:
            return
        try:
            async for chunk in stream.chunks():  # a ranged GET of BLOCK bytes each
                for first in range(0, len(chunk), READ_CHUNK):
                    yield bytes(chunk[first : first + READ_CHUNK])
        except AzureError as exc:
            raise StorageError(NAME, f"read {path}: {exc}") from exc

    async def writer(self, path: str, *, append: bool = False) -> AzureWriter:
        name = self.blob_name(path)
        size = None
        if append:
            try:
                properties = await self._properties(name, path)
            except PathNotFound:
                properties = None
            if properties is not None and properties.blob_type != BlobType.APPENDBLOB:
                await self._reopen(name, path)
                properties = await self._properties(name, path)
            size = None if properties is None else int(properties.size)
        return AzureWriter(self, name, size, append)

    async def _reopen(self, name: str, path: str) -> None:
        """Turns a block blob into an append blob with the same bytes: copied aside, then
        streamed back block by block (one block in memory). Nothing else writes a path while
        it is appended to (an upload session is locked), so the short absence is unseen."""
        aside = name + REOPENED
        await self._copy(name, aside, path)
        await self._call("delete", path, lambda c: self._blob(c, name).delete_blob())
        await self.create_append_blob(name)
        position = 0
        async for chunk in self.reader(self._path(aside)):
            await self.append(name, chunk, position)
            position += len(chunk)
        await self._call("delete", path, lambda c: self._blob(c, aside).delete_blob())

    async def stat(self, path: str) -> FileInfo:
        name = self.blob_name(path)
        try:
            properties = await self._properties(name, path)
        except PathNotFound:
            pass
        else:
            return FileInfo(path, int(properties.size), properties.last_modified.timestamp(), False)

        async def first(client: Client) -> Any:
            pages = client.container.list_blobs(
                name_starts_with=name + "/", results_per_page=1
            ).by_page()
            async for page in pages:
                async for item in page:
                    return item
            return None

        item = await self._call("stat", path, first)
        if item is None:
            raise PathNotFound(NAME, path)
        return FileInfo(path, 0, item.last_modified.timestamp(), True)

    async def list(self, path: str) -> list[str]:
        prefix = self.blob_name(path) + "/"

        async def children(client: Client) -> list[str]:
            found = []
            async for item in client.container.walk_blobs(name_starts_with=prefix, delimiter="/"):
                found.append(item.name.rstrip("/"))
            return found

        names = [n for n in await self._call("list", path, children) if "~" not in n[len(prefix) :]]
        if not names:
            raise PathNotFound(NAME, path)
        return [self._path(name) for name in names]

    async def walk(self, path: str) -> AsyncIterator[FileInfo]:
        """One listing of every blob below the prefix, 5000 a request."""
        prefix = self.blob_name(path) + "/"
        client = await self.client()
        try:
            async for item in client.container.list_blobs(name_starts_with=prefix):
                if "~" in item.name.rpartition("/")[2]:
                    continue  # a block blob being turned into an append blob
                yield FileInfo(
                    self._path(item.name), int(item.size), item.last_modified.timestamp(), False
                )
        except AzureError as exc:
            raise StorageError(NAME, f"list {path}: {exc}") from exc

    async def files_named(self, path: str, name: str) -> AsyncIterator[FileInfo]:
        """One listing of everything below, as walk."""
        prefix = path.rstrip("/") + "/"
        async for info in self.walk(path):
            parts = info.path[len(prefix) :].split("/")
            if len(parts) == 2 and parts[1] == name:
                yield info

    async def touch(self, path: str) -> None:
        """Sets the blob's metadata, which renews its Last-Modified time and leaves the
        content as it is."""
        name = self.blob_name(path)
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        await self._call(
            "touch", path, lambda c: self._blob(c, name).set_blob_metadata({TOUCHED: stamp})
        )

    async def prune(self, path: str, top: str) -> None:
        """Nothing to do: Azure Blob Storage keeps no directories."""

    async def move(self, source: str, dest: str) -> None:
        src, dst = self.blob_name(source), self.blob_name(dest)
        await self._properties(src, source)  # PathNotFound names the source
        if src == dst:
            return
        await self._copy(src, dst, source)
        await self._call("delete", source, lambda c: self._blob(c, src).delete_blob())

    async def delete(self, path: str) -> None:
        """The blob at the path or, when there is none, every blob below it."""
        name = self.blob_name(path)
        try:
            await self._call("delete", path, lambda c: self._blob(c, name).delete_blob())
            return
        except PathNotFound:
            pass

        async def below(client: Client) -> list[str]:
            return [b.name async for b in client.container.list_blobs(name_starts_with=name + "/")]

        doomed = await self._call("list", path, below)
        if not doomed:
            raise PathNotFound(NAME, path)
        gate = asyncio.Semaphore(DELETE_CONCURRENCY)

        async def remove(blob: str) -> None:
            async with gate:
                with contextlib.suppress(PathNotFound):  # gone meanwhile
                    await self._call("delete", path, lambda c: self._blob(c, blob).delete_blob())

        await asyncio.gather(*(remove(blob) for blob in doomed))

    def local_file(self, path: str) -> str | None:
        return None

    async def redirect_url(self, path: str) -> str | None:
        """A SAS URL for reading the blob, valid for 20 minutes; None when the credentials
        cannot sign (a connection string with no account key)."""
        client = await self.client()
        name = self.blob_name(path)
        signature = await self._signature(client, name)
        return f"{self._blob(client, name).url}?{signature}" if signature else None


def _body(data: bytes) -> io.BytesIO:
    """A request body aiohttp sends from a stream (it warns about bytes over 1 MiB)."""
    return io.BytesIO(data)


def create(parameters: dict[str, Any]) -> AzureDriver:
    return AzureDriver(Options.parse(parameters))


register(NAME, create)
