"""A storage root: a local directory or an object-store URI, through pyarrow filesystems.

Object stores are reached with pyarrow's own configuration, so a URI works wherever the AWS
SDK's usual settings do:

- credentials, region and endpoint from the standard environment (``AWS_ACCESS_KEY_ID``,
  ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``/``AWS_DEFAULT_REGION``,
  ``AWS_ENDPOINT_URL`` for an S3-compatible server such as MinIO), a profile or an instance
  role;
- or in the URI's query, which wins over the environment:
  ``s3://bucket/prefix?endpoint_override=host:9000&scheme=http&region=us-east-1``.

Nothing secret is ever put in the URI by the engine: ``uri_for`` keeps only the query the
user gave.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from engine_core.errors import EngineError


@dataclass(frozen=True)
class Storage:
    """``root`` as given, the pyarrow filesystem behind it and the path inside that filesystem."""

    uri: str
    fs: pafs.FileSystem
    base: str

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    @classmethod
    def open(cls, root: str) -> Storage:
        if "://" in root and not root.startswith("file://"):
            try:
                fs, path = pafs.FileSystem.from_uri(root)
            except Exception as exc:  # pyarrow raises several types for bad URIs
                raise EngineError(
                    "STORAGE_UNAVAILABLE", f"cannot open storage root {root!r}: {exc}"
                ) from exc
            return cls(root, fs, path.rstrip("/"))
        path = root[len("file://") :] if root.startswith("file://") else root
        path = os.path.abspath(os.path.expanduser(path))
        return cls(root, pafs.LocalFileSystem(), path)

    def join(self, *parts: str) -> str:
        return "/".join([self.base.rstrip("/"), *parts])

    def uri_for(self, path: str) -> str:
        """A path of this filesystem as a URI another process can open (``s3://bucket/key``
        with the root's query, so the same endpoint); local paths stay plain paths."""
        if self.is_local:
            return path
        split = urlsplit(self.uri)
        query = f"?{split.query}" if split.query else ""
        return f"{split.scheme}://{path.lstrip('/')}{query}"

    def exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    def ensure_writable(self) -> None:
        """Fail early, with a clear code, when the root cannot take output."""
        if not self.is_local:
            self._probe_object_store()
            return
        try:
            os.makedirs(self.base, exist_ok=True)
            probe = os.path.join(self.base, f".write-probe-{os.getpid()}")
            with open(probe, "wb") as fh:
                fh.write(b"ok")
            os.remove(probe)
        except OSError as exc:
            raise EngineError(
                "STORAGE_NOT_WRITABLE",
                f"storage root {self.base} is not writable ({exc.strerror}); set "
                "ENGINE_STORAGE_ROOT / --out to a writable directory",
                key=self.base,
            ) from exc

    def _probe_object_store(self) -> None:
        """Write and delete one small object under the root, so a missing bucket, a wrong
        endpoint or missing credentials stop the run before any state computes."""
        probe = self.join(f".write-probe-{uuid.uuid4().hex}")
        try:
            with self.fs.open_output_stream(probe) as out:
                out.write(b"ok")
            self.fs.delete_file(probe)
        except OSError as exc:
            where = self.uri_for(self.base)  # no user:password@ from the given URI
            raise EngineError(
                "STORAGE_NOT_WRITABLE",
                f"storage root {where} is not writable: {exc}. Check that the bucket exists, "
                "the endpoint (AWS_ENDPOINT_URL or ?endpoint_override=...&scheme=http) and the "
                "credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)",
                key=where,
            ) from exc
