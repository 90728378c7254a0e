"""Published dataset files as a reader outside the engine's store sees them: a local path or a
URI (``s3://bucket/key?endpoint_override=...``) turned into a filesystem and its part files."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import pyarrow.fs as pafs


def filesystem_for(path: str) -> tuple[pafs.FileSystem, str]:
    if "://" in path and not path.startswith("file://"):
        return pafs.FileSystem.from_uri(path)
    local = path.removeprefix("file://")
    return pafs.LocalFileSystem(), local


def dataset_files(path: str) -> list[str]:
    """The Parquet part files of one published dataset partition, in name order."""
    fs, base = filesystem_for(path)
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    return sorted(i.path for i in infos if i.is_file and i.path.endswith(".parquet"))


def file_stamps(fs: pafs.FileSystem, base: str) -> list[tuple[str, int, int | None]]:
    """(path relative to ``base``, size, modification time in ns) of every file under
    ``base``, in path order: what a record of the files' state signs (a partition published
    again changes it)."""
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    return sorted((i.path[len(base):], i.size, i.mtime_ns) for i in infos if i.is_file)


def join_path(base: str, *parts: str) -> str:
    """``base/part/...`` for a local path or a URI whose query (an object store's endpoint
    options) must stay at the end."""
    split = urlsplit(base)
    if "://" not in base or not split.query:
        return "/".join([base.rstrip("/"), *parts])
    path = "/".join([split.path.rstrip("/"), *parts])
    return urlunsplit((split.scheme, split.netloc, path, split.query, split.fragment))
