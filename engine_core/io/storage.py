"""A storage root: a local directory or an object-store URI, through pyarrow filesystems."""

from __future__ import annotations

import os
from dataclasses import dataclass

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

    def exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    def ensure_writable(self) -> None:
        """Fail early, with a clear code, when the root cannot take output."""
        if not self.is_local:
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
