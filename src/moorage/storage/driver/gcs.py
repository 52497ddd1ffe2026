"""The Google Cloud Storage driver: keys are objects below `rootdirectory` in one bucket, laid
out as distribution's gcs driver lays them, so a bucket moves between the two registries.

Files are objects. An appending writer (upload data) streams into a GCS resumable upload
session at the file's key, in pieces of a multiple of 256 KiB (GCS's unit), holding at most one
`chunksize` piece in memory. Between requests the file is what distribution's driver leaves: an
object at the key with content type `application/x-docker-upload-session`, holding the bytes
not yet sent (under 256 KiB), with metadata `Session-URI` (the resumable session) and `Offset`
(the bytes the session holds). Either registry continues the other's session. Reading or moving
such a file first seals it: the held bytes go to the session as its last piece, and GCS puts
the finished object in place of the marker.

Requests use the JSON API through gcloud-aio-storage, except the resumable session's own
requests (started, fed and finished here by the documented protocol, since the library only
uploads whole files). `serviceurl` points the driver at another endpoint: a plain-HTTP one is
an emulator and gets no credentials; an HTTPS one (a private endpoint) gets them as Google does.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import aiohttp
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from gcloud.aio.auth import Token
from gcloud.aio.storage import Storage

from moorage.storage.driver.base import FileInfo, PathNotFound, StorageError, register
from moorage.storage.driver.chunks import Chunks
from moorage.storage.driver.objects import PerLoop, object_key, object_path
from moorage.storage.driver.params import Parameters

NAME = "gcs"
GOOGLE = "https://storage.googleapis.com"
UNIT = 256 * 1024  # resumable upload pieces are multiples of this, but for the last
DEFAULT_CHUNK = 16 * 1024 * 1024
DEFAULT_CONCURRENCY = 50
MIN_CONCURRENCY = 25
SESSION_TYPE = "application/x-docker-upload-session"
BLOB_TYPE = "application/octet-stream"
TOUCHED = "moorage-touched"  # the metadata key a touch sets
SCOPES = ["https://www.googleapis.com/auth/devstorage.full_control"]
READ_CHUNK = 1 << 20
REDIRECT_EXPIRY = 20 * 60  # seconds, as distribution's
ATTEMPTS = 5  # for idempotent requests answered 429, 5xx or not at all
DELETE_CONCURRENCY = 32
KEYS = (
    "bucket",
    "keyfile",
    "credentials",
    "rootdirectory",
    "chunksize",
    "useragent",
    "maxconcurrency",
    "serviceurl",
)
T = TypeVar("T")


@dataclass
class Options:
    bucket: str
    rootdirectory: str
    chunksize: int
    credentials: dict[str, Any] | None  # a credentials document, from keyfile or credentials
    signer: tuple[str, rsa.RSAPrivateKey] | None  # a service account's email and key
    keyfile: str
    serviceurl: str  # the API root: GOOGLE or the configured endpoint
    emulator: bool  # a plain-HTTP endpoint: requests carry no credentials
    useragent: str
    maxconcurrency: int

    @classmethod
    def parse(cls, values: dict[str, Any]) -> Options:
        p = Parameters(NAME, values, KEYS)
        chunk = p.integer("chunksize", DEFAULT_CHUNK)
        if chunk < UNIT or chunk % UNIT:
            raise ValueError(f"{p.path('chunksize')}: a positive multiple of {UNIT} (256 KiB)")
        keyfile = p.text("keyfile")
        credentials = None
        if keyfile:
            try:
                with open(keyfile, encoding="utf-8") as file:
                    credentials = _service_account(file.read(), p.path("keyfile"))
            except OSError as exc:
                message = f"{p.path('keyfile')}: cannot read {keyfile}: {exc.strerror}"
                raise ValueError(message) from None
        elif p.given("credentials"):
            raw = p.values["credentials"]
            text = raw if isinstance(raw, str) else json.dumps(raw)
            credentials = _service_account(text, p.path("credentials"))
        url = p.text("serviceurl").rstrip("/")
        if url and urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"{p.path('serviceurl')}: expected an http:// or https:// URL")
        concurrency = p.integer("maxconcurrency", DEFAULT_CONCURRENCY)
        signer = None
        if credentials and credentials["type"] == "service_account":
            key = serialization.load_pem_private_key(
                credentials["private_key"].encode(), password=None
            )
            assert isinstance(key, rsa.RSAPrivateKey)  # checked by _service_account
            signer = (credentials["client_email"], key)
        return cls(
            bucket=p.text("bucket", required=True),
            rootdirectory=p.text("rootdirectory").strip("/"),
            chunksize=chunk,
            credentials=credentials,
            signer=signer,
            keyfile=keyfile,
            serviceurl=url or GOOGLE,
            emulator=url.startswith("http://"),
            useragent=p.text("useragent"),
            maxconcurrency=max(concurrency, MIN_CONCURRENCY),
        )


def _service_account(text: str, key: str) -> dict[str, Any]:
    """A credentials JSON document (a service account key, as Google issues them)."""
    try:
        document = json.loads(text)
    except ValueError:
        raise ValueError(f"{key}: not a JSON credentials document") from None
    if not isinstance(document, dict) or not document.get("type"):
        raise ValueError(f"{key}: not a credentials document (no type)")
    if document["type"] == "service_account":
        for field in ("client_email", "private_key"):
            if not document.get(field):
                raise ValueError(f"{key}: a service account key without {field}")
        try:
            private = serialization.load_pem_private_key(
                document["private_key"].encode(), password=None
            )
        except (ValueError, TypeError):
            raise ValueError(f"{key}: the private_key is not a PEM private key") from None
        if not isinstance(private, rsa.RSAPrivateKey):
            raise ValueError(f"{key}: the private_key is not an RSA key")
    return document


def _status(exc: BaseException) -> int | None:
    return exc.status if isinstance(exc, aiohttp.ClientResponseError) else None


def _transient(exc: BaseException) -> bool:
    status = _status(exc)
    if status is None:
        return isinstance(exc, aiohttp.ClientError | asyncio.TimeoutError)
    return status == 429 or status >= 500


@dataclass
class Client:
    """One event loop's connections."""

    http: aiohttp.ClientSession
    storage: Storage
    token: Token | None  # None for an emulator

    async def headers(self) -> dict[str, str]:
        if self.token is None:
            return {}
        try:
            token = await self.token.get()
        except Exception as exc:  # the library raises whatever its token source raised
            raise StorageError(NAME, f"no access token from the credentials: {exc}") from exc
        return {"Authorization": f"Bearer {token}"}


@dataclass
class Pending:
    """An unsealed appended file: its resumable session, the bytes the session holds, and the
    bytes held in the marker object."""

    session: str | None
    offset: int
    held: bytes

    @property
    def size(self) -> int:
        return self.offset + len(self.held)


class GcsWriter:
    def __init__(self, driver: GcsDriver, key: str, pending: Pending | None, append: bool):
        self._driver = driver
        self._key = key
        self._append = append
        self._session = pending.session if pending else None
        self._offset = pending.offset if pending else 0
        self._buffer = Chunks(pending.held if pending else b"")

    @property
    def size(self) -> int:
        return self._offset + len(self._buffer)

    async def write(self, data: bytes) -> None:
        self._buffer.append(data)
        chunk = self._driver.options.chunksize
        while len(self._buffer) >= chunk:
            await self._send(chunk)

    async def _send(self, length: int) -> None:
        """Sends the first `length` bytes of the buffer (a multiple of UNIT) to the session."""
        if self._session is None:
            self._session = await self._driver.start_session(self._key)
        piece = self._buffer.take(length)
        try:
            await self._driver.send_piece(self._session, piece, self._offset, None)
        except BaseException:
            self._buffer.put_back(piece)
            raise
        self._offset += length

    async def commit(self) -> None:
        """Fresh writer: the object appears. Appending writer: the bytes persist (in the
        session, and the rest in the marker) and the file stays open for the next append."""
        if not self._append:
            if self._session is None:
                await self._driver.upload(self._key, self._buffer.value(), BLOB_TYPE)
            else:
                size, rest = self.size, self._buffer.take(len(self._buffer))
                await self._driver.send_piece(self._session, rest, self._offset, size)
            return
        aligned = len(self._buffer) - len(self._buffer) % UNIT
        if aligned:
            await self._send(aligned)
        metadata = {"Session-URI": self._session or "", "Offset": str(self._offset)}
        await self._driver.upload(self._key, self._buffer.value(), SESSION_TYPE, metadata)

    async def cancel(self) -> None:
        if self._append:
            await self.commit()  # an appending writer's bytes are kept (the driver contract)
        elif self._session is not None:
            await self._driver.cancel_session(self._session)


class GcsDriver:
    name = NAME

    def __init__(self, options: Options) -> None:
        self.options = options
        # One client per event loop: aiohttp sessions belong to the loop that made them.
        self._clients = PerLoop(self._make_client)
        bucket = quote(options.bucket, safe="")
        self._root = f"{options.serviceurl}/storage/v1/b/{bucket}/o"
        self._upload_root = f"{options.serviceurl}/upload/storage/v1/b/{bucket}/o"
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300)

    def key(self, path: str) -> str:
        return object_key(self.options.rootdirectory, path)

    def _path(self, key: str) -> str:
        return object_path(self.options.rootdirectory, key)

    async def client(self) -> Client:
        """The running loop's client, made on first use."""
        return await self._clients.get()

    async def _make_client(self) -> Client:
        o = self.options
        headers = {"User-Agent": o.useragent} if o.useragent else None
        http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=o.maxconcurrency),
            timeout=self._timeout,
            headers=headers,
        )
        token = None
        if not o.emulator:
            service = io.StringIO(json.dumps(o.credentials)) if o.credentials else None
            # The library is typed for its synchronous twin too (requests sessions).
            token = Token(service_file=service, session=http, scopes=SCOPES)  # type: ignore[arg-type]
        storage = Storage(
            token=token,
            session=http,  # type: ignore[arg-type]
            api_root=o.serviceurl,
            api_is_dev=o.emulator,
        )
        return Client(http, storage, token)

    def preload(self) -> None:
        """Nothing to load: the client library is loaded with this module."""

    async def close(self) -> None:
        client = await self._clients.pop()
        if client is not None:
            await client.http.close()

    async def _call(
        self,
        what: str,
        path: str,
        operation: Callable[[Client], Awaitable[T]],
        *,
        retry: bool = True,
    ) -> T:
        """One request; a missing object is PathNotFound, anything else a StorageError.
        Idempotent requests are tried again on a 429, a 5xx or no answer, as Google advises."""
        client = await self.client()
        delay = 0.5
        for attempt in range(1, ATTEMPTS + 1):
            await client.headers()  # a token for the library's requests too, or a StorageError
            try:
                return await operation(client)
            except (TimeoutError, aiohttp.ClientError) as exc:
                if _status(exc) == 404:
                    raise PathNotFound(NAME, path) from exc
                if retry and attempt < ATTEMPTS and _transient(exc):
                    await asyncio.sleep(delay)
                    delay *= 2
                    continue
                raise StorageError(NAME, f"{what} {path}: {_describe(exc)}") from exc
        raise AssertionError("unreachable")

    # -- objects ------------------------------------------------------------------------------

    def _object_url(self, key: str) -> str:
        return f"{self._root}/{quote(key, safe='')}"

    async def metadata(self, key: str) -> dict[str, Any]:
        """The object's resource; PathNotFound when there is none."""

        async def get(client: Client) -> dict[str, Any]:
            return await client.storage.download_metadata(
                self.options.bucket,
                key,
                timeout=self._timeout,  # type: ignore[arg-type]
            )

        return await self._call("stat", key, get)

    async def upload(
        self, key: str, data: bytes, content_type: str, metadata: dict[str, str] | None = None
    ) -> None:
        """Writes a whole object in one request (it replaces the object there atomically)."""

        async def post(client: Client) -> None:
            await client.storage.upload(
                self.options.bucket,
                key,
                data,
                content_type=content_type,
                metadata={"metadata": metadata} if metadata is not None else None,
                force_resumable_upload=False,  # one request: the object appears whole or not
                timeout=self._timeout,  # type: ignore[arg-type]
            )

        await self._call("write", key, post)

    async def start_session(self, key: str) -> str:
        """Starts a resumable upload to `key`; returns the session's URI."""

        async def post(client: Client) -> str:
            headers = {
                **await client.headers(),
                "Content-Type": "application/json; charset=UTF-8",
                "X-Upload-Content-Type": BLOB_TYPE,
            }
            async with client.http.post(
                self._upload_root,
                params={"uploadType": "resumable", "name": key},
                data=json.dumps({"name": key, "contentType": BLOB_TYPE}),
                headers=headers,
            ) as response:
                await _check(response)
                return response.headers["Location"]

        return await self._call("start upload", key, post)

    async def send_piece(
        self, session: str, piece: list[bytes], first: int, total: int | None
    ) -> None:
        """Sends bytes `first`.. of the upload, given as chunks (streamed, never joined); with
        `total`, the last piece, which finishes the object. A piece is not sent twice: what
        the session persisted of a piece that failed is unknown, and the digest check of the
        upload tells if it went wrong."""
        length = sum(len(chunk) for chunk in piece)

        async def body() -> AsyncIterator[bytes]:
            for chunk in piece:
                yield chunk

        async def put(client: Client) -> None:
            last = first + length - 1
            size = "*" if total is None else str(total)
            span = f"bytes {first}-{last}/{size}" if length else f"bytes */{size}"
            headers = {
                **await client.headers(),
                "Content-Range": span,
                "Content-Length": str(length),
            }
            async with client.http.put(
                session,
                data=body(),
                headers=headers,
                allow_redirects=False,  # 308: more
            ) as response:
                if total is None:
                    if response.status != 308:
                        await _check(response)
                        raise StorageError(NAME, f"upload session answered {response.status}")
                    held = response.headers.get("Range", "")
                    if held != f"bytes=0-{last}":
                        raise StorageError(
                            NAME, f"upload session holds {held or 'nothing'}, expected 0-{last}"
                        )
                else:
                    await _check(response)

        await self._call("upload", session.split("?")[0], put, retry=False)

    async def cancel_session(self, session: str) -> None:
        """Ends a resumable session (its bytes are dropped); some emulators cannot."""

        async def delete(client: Client) -> None:
            async with client.http.delete(session, headers=await client.headers()):
                pass

        with contextlib.suppress(StorageError):
            await self._call("cancel upload", session.split("?")[0], delete, retry=False)

    async def _pending(self, key: str, meta: dict[str, Any]) -> Pending:
        """The state of the unsealed file `meta` describes (its marker's bytes are read)."""
        fields = meta.get("metadata") or {}
        held = await self._download(key, meta.get("generation"))
        return Pending(fields.get("Session-URI") or None, int(fields.get("Offset") or 0), held)

    async def _download(self, key: str, generation: str | None = None) -> bytes:
        async def get(client: Client) -> bytes:
            params = {"alt": "media", **({"generation": generation} if generation else {})}
            async with client.http.get(
                self._object_url(key), params=params, headers=await client.headers()
            ) as response:
                await _check(response)
                return await response.read()

        return await self._call("read", key, get)

    async def seal(self, key: str, meta: dict[str, Any]) -> dict[str, Any]:
        """Turns the unsealed file `meta` describes into an ordinary object; returns the
        object's resource (`meta` itself for any other object)."""
        if meta.get("contentType") != SESSION_TYPE:
            return meta
        pending = await self._pending(key, meta)
        if pending.session is None:
            await self.upload(key, pending.held, BLOB_TYPE)
        else:
            await self.send_piece(pending.session, [pending.held], pending.offset, pending.size)
        return await self.metadata(key)

    async def _sealed(self, path: str) -> dict[str, Any]:
        key = self.key(path)
        try:
            meta = await self.metadata(key)
        except PathNotFound:
            raise PathNotFound(NAME, path) from None
        return await self.seal(key, meta)

    async def _list(
        self, path: str, prefix: str, delimiter: bool, page_size: int = 1000
    ) -> AsyncIterator[dict[str, Any]]:
        """Every page of a listing below `prefix`."""
        token: str | None = None
        while True:
            params = {"prefix": prefix, "maxResults": str(page_size)}
            if delimiter:
                params["delimiter"] = "/"
            if token:
                params["pageToken"] = token

            async def get(client: Client, params: dict[str, str] = params) -> dict[str, Any]:
                return await client.storage.list_objects(
                    self.options.bucket,
                    params=params,
                    timeout=self._timeout,  # type: ignore[arg-type]
                )

            page = await self._call("list", path, get)
            yield page
            token = page.get("nextPageToken")
            if not token:
                return

    # -- the driver contract ------------------------------------------------------------------

    async def get_content(self, path: str) -> bytes:
        key = self.key(path)

        async def get(client: Client) -> tuple[str, bytes]:
            async with client.http.get(
                self._object_url(key), params={"alt": "media"}, headers=await client.headers()
            ) as response:
                await _check(response)
                return response.headers.get("Content-Type", ""), await response.read()

        try:
            kind, content = await self._call("read", key, get)
        except PathNotFound:
            raise PathNotFound(NAME, path) from None
        if kind.split(";")[0].strip() == SESSION_TYPE:
            await self._sealed(path)
            return await self._download(key)
        return content

    async def put_content(self, path: str, content: bytes) -> None:
        await self.upload(self.key(path), content, BLOB_TYPE)

    async def reader(self, path: str, offset: int = 0) -> AsyncIterator[bytes]:
        meta = await self._sealed(path)
        async for chunk in self._stream(self.key(path), meta, offset):
            yield chunk

    async def _stream(self, key: str, meta: dict[str, Any], offset: int) -> AsyncIterator[bytes]:
        """The bytes of the object generation `meta` describes, from `offset` on."""
        path = self._path(key)
        if offset >= int(meta["size"]) and offset:
            return
        client = await self.client()
        headers = {**await client.headers(), **({"Range": f"bytes={offset}-"} if offset else {})}
        params = {"alt": "media", "generation": str(meta["generation"])}
        try:
            async with client.http.get(
                self._object_url(key), params=params, headers=headers
            ) as response:
                if response.status == 404:
                    raise PathNotFound(NAME, path)
                await _check(response)
                while chunk := await response.content.read(READ_CHUNK):
                    yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise StorageError(NAME, f"read {path}: {_describe(exc)}") from exc

    async def writer(self, path: str, *, append: bool = False) -> GcsWriter:
        key = self.key(path)
        pending = None
        if append:
            try:
                meta = await self.metadata(key)
            except PathNotFound:
                meta = None
            if meta is not None and meta.get("contentType") == SESSION_TYPE:
                pending = await self._pending(key, meta)
            elif meta is not None:
                return await self._reopen(key, meta)
        return GcsWriter(self, key, pending, append)

    async def _reopen(self, key: str, meta: dict[str, Any]) -> GcsWriter:
        """An appending writer continuing an ordinary object: its bytes are streamed into a
        new session (whole pieces) and the writer's buffer (the rest). The object stays as it
        is until the writer commits, which puts the marker in its place."""
        writer = GcsWriter(self, key, None, True)
        async for chunk in self._stream(key, meta, 0):
            await writer.write(chunk)
        return writer

    async def stat(self, path: str) -> FileInfo:
        key = self.key(path)
        try:
            meta = await self.metadata(key)
        except PathNotFound:
            pass
        else:
            size = int(meta["size"])
            if meta.get("contentType") == SESSION_TYPE:
                size += int((meta.get("metadata") or {}).get("Offset") or 0)
            return FileInfo(path, size, _time(meta), False)
        async for page in self._list(path, key + "/", False, page_size=1):
            for item in page.get("items", []):
                return FileInfo(path, 0, _time(item), True)
            break
        raise PathNotFound(NAME, path)

    async def list(self, path: str) -> list[str]:
        prefix = self.key(path) + "/"
        children: list[str] = []
        async for page in self._list(path, prefix, True):
            children += [item["name"] for item in page.get("items", []) if item["name"] != prefix]
            children += [name.rstrip("/") for name in page.get("prefixes", [])]
        if not children:
            raise PathNotFound(NAME, path)
        return [self._path(key) for key in children]

    async def walk(self, path: str) -> AsyncIterator[FileInfo]:
        """One listing of every object below the prefix, a thousand a request. An appended
        file shows its whole size (the session's bytes and the marker's)."""
        async for page in self._list(path, self.key(path) + "/", False):
            for item in page.get("items", []):
                if item["name"].endswith("/"):
                    continue  # a console-made folder placeholder
                size = int(item["size"])
                if item.get("contentType") == SESSION_TYPE:
                    size += int((item.get("metadata") or {}).get("Offset") or 0)
                yield FileInfo(self._path(item["name"]), size, _time(item), False)

    async def files_named(self, path: str, name: str) -> AsyncIterator[FileInfo]:
        """One listing of everything below, as walk."""
        prefix = path.rstrip("/") + "/"
        async for info in self.walk(path):
            parts = info.path[len(prefix) :].split("/")
            if len(parts) == 2 and parts[1] == name:
                yield info

    async def touch(self, path: str) -> None:
        """Rewrites the object onto itself with a metadata field renewed: a new generation
        with the same content (server-side, no bytes through here) and a new `updated`, the
        modification time the driver reports. GCS would renew `updated` for a metadata patch
        alone; fake-gcs-server, the emulator the tests run, does not."""
        key = self.key(path)
        meta = await self._sealed(path)
        fields = {**(meta.get("metadata") or {}), TOUCHED: datetime.datetime.now(datetime.UTC)}
        resource = {
            "Content-Type": meta.get("contentType") or BLOB_TYPE,  # the library's spelling
            "metadata": {name: str(value) for name, value in fields.items()},
        }

        async def rewrite(client: Client) -> dict[str, Any]:
            return await client.storage.copy(
                self.options.bucket,
                key,
                self.options.bucket,
                metadata=resource,
                timeout=self._timeout,  # type: ignore[arg-type]
            )

        await self._call("touch", path, rewrite)

    async def prune(self, path: str, top: str) -> None:
        """Nothing to do: GCS keeps no directories."""

    async def move(self, source: str, dest: str) -> None:
        await self._sealed(source)
        src_key, dst_key = self.key(source), self.key(dest)
        if src_key == dst_key:
            return

        async def rewrite(client: Client) -> dict[str, Any]:
            return await client.storage.copy(
                self.options.bucket,
                src_key,
                self.options.bucket,
                new_name=dst_key,
                timeout=self._timeout,  # type: ignore[arg-type]
            )

        await self._call("move", source, rewrite)
        await self._delete_object(src_key, source)

    async def _delete_object(self, key: str, path: str) -> None:
        async def delete(client: Client) -> None:
            await client.storage.delete(
                self.options.bucket,
                key,
                timeout=self._timeout,  # type: ignore[arg-type]
            )

        await self._call("delete", path, delete)

    async def delete(self, path: str) -> None:
        """The object at the path, if any, and every object below it. Resumable sessions of
        unsealed files deleted are ended too."""
        key = self.key(path)
        doomed: list[dict[str, Any]] = []
        with contextlib.suppress(PathNotFound):
            doomed.append(await self.metadata(key))
        async for page in self._list(path, key + "/", False):
            doomed += page.get("items", [])
        if not doomed:
            raise PathNotFound(NAME, path)
        gate = asyncio.Semaphore(DELETE_CONCURRENCY)

        async def remove(item: dict[str, Any]) -> None:
            async with gate:
                session = (item.get("metadata") or {}).get("Session-URI")
                if item.get("contentType") == SESSION_TYPE and session:
                    await self.cancel_session(session)
                with contextlib.suppress(PathNotFound):  # gone meanwhile
                    await self._delete_object(item["name"], path)

        await asyncio.gather(*(remove(item) for item in doomed))

    def local_file(self, path: str) -> str | None:
        return None

    async def redirect_url(self, path: str) -> str | None:
        """A V4 signed GET URL, valid for 20 minutes, when the credentials hold a service
        account's key to sign with; None otherwise (then the registry serves the blob)."""
        if self.options.signer is None:
            return None
        email, key = self.options.signer
        return sign_url(
            self.options.serviceurl,
            self.options.bucket,
            self.key(path),
            email,
            key,
            REDIRECT_EXPIRY,
        )


def sign_url(
    service: str,
    bucket: str,
    key: str,
    email: str,
    private_key: rsa.RSAPrivateKey,
    expires: int,
) -> str:
    """A URL for a GET of `bucket/key` at `service`, signed by Google's V4 scheme
    (GOOG4-RSA-SHA256) with a service account's key."""
    parts = urlsplit(service)
    now = datetime.datetime.now(datetime.UTC)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{now.strftime('%Y%m%d')}/auto/storage/goog4_request"
    resource = f"/{quote(bucket, safe='')}/{quote(key, safe='/~')}"
    query = "&".join(
        f"{quote(name, safe='')}={quote(value, safe='')}"
        for name, value in sorted(
            {
                "X-Goog-Algorithm": "GOOG4-RSA-SHA256",
                "X-Goog-Credential": f"{email}/{scope}",
                "X-Goog-Date": stamp,
                "X-Goog-Expires": str(expires),
                "X-Goog-SignedHeaders": "host",
            }.items()
        )
    )
    canonical = "\n".join(
        ["GET", resource, query, f"host:{parts.netloc}\n", "host", "UNSIGNED-PAYLOAD"]
    )
    signed = "\n".join(
        ["GOOG4-RSA-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    signature = private_key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256()).hex()
    return f"{parts.scheme}://{parts.netloc}{resource}?{query}&X-Goog-Signature={signature}"


async def _check(response: aiohttp.ClientResponse) -> None:
    """Raises ClientResponseError for an error status, with the start of its body."""
    if response.status >= 400:
        text = (await response.text(errors="replace"))[:300]
        raise aiohttp.ClientResponseError(
            response.request_info,
            response.history,
            status=response.status,
            message=f"{response.reason}: {text}",
            headers=response.headers,
        )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"{exc.status} {exc.message}".replace("\n", " ")
    return str(exc) or type(exc).__name__


def _time(item: dict[str, Any]) -> float:
    stamp = item.get("updated") or item.get("timeCreated")
    if not stamp:
        return 0.0
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def create(parameters: dict[str, Any]) -> GcsDriver:
    return GcsDriver(Options.parse(parameters))


register(NAME, create)
