"""OCI image layouts built in the test, since no base image can be pulled here: gzip tar layers,
a config, a manifest, index.json and oci-layout, readable by skopeo, podman and umoci."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes]) -> bytes:
    """A gzip-compressed tar of the given files; deterministic for the same input."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = 0
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), mtime=0)


@dataclass
class Image:
    layout: Path  # the OCI image layout directory
    tag: str
    manifest: bytes
    manifest_digest: str
    config_digest: str
    layer_digests: list[str]

    @property
    def ref(self) -> str:
        """The skopeo/podman transport reference: oci:DIR:TAG."""
        return f"oci:{self.layout}:{self.tag}"


def _write_blob(layout: Path, data: bytes) -> str:
    digest = digest_of(data)
    path = layout / "blobs" / "sha256" / digest.split(":")[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest


def make_image(
    layout: Path,
    tag: str = "latest",
    layers: list[dict[str, bytes]] | None = None,
    *,
    architecture: str = "amd64",
    seed: str = "",
) -> Image:
    """Writes (or adds to) an OCI image layout holding one image under `tag`. Each layer is a
    dict of file paths to contents; `seed` makes otherwise equal images differ."""
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    layers = layers or [{"hello.txt": f"hello {seed}\n".encode()}]
    layer_blobs = [layer_tar(files) for files in layers]
    diff_ids = [digest_of(gzip.decompress(blob)) for blob in layer_blobs]
    config = json.dumps(
        {
            "architecture": architecture,
            "os": "linux",
            "config": {"Cmd": ["/bin/true"], "Labels": {"seed": seed}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        },
        sort_keys=True,
    ).encode()
    config_digest = _write_blob(layout, config)
    layer_digests = [_write_blob(layout, blob) for blob in layer_blobs]
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [
                {"mediaType": OCI_LAYER, "digest": d, "size": len(b)}
                for d, b in zip(layer_digests, layer_blobs, strict=True)
            ],
        },
        sort_keys=True,
    ).encode()
    manifest_digest = _write_blob(layout, manifest)
    index_path = layout / "index.json"
    index = (
        json.loads(index_path.read_text())
        if index_path.exists()
        else {"schemaVersion": 2, "manifests": []}
    )
    index["manifests"] = [
        m
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag
    ]
    index["manifests"].append(
        {
            "mediaType": OCI_MANIFEST,
            "digest": manifest_digest,
            "size": len(manifest),
            "annotations": {"org.opencontainers.image.ref.name": tag},
            "platform": {"architecture": architecture, "os": "linux"},
        }
    )
    index_path.write_text(json.dumps(index))
    return Image(layout, tag, manifest, manifest_digest, config_digest, layer_digests)
