"""Images as the client makes them: a directory packed into a deterministic, content-addressed bundle, and
pushed to the server's image store."""

from __future__ import annotations

import io
import json
import os
import shlex
import tarfile
from pathlib import Path
from typing import Any

from roost.client.api import Api
from roost.client.errors import UserError


def bundle_directory(directory: Path, ignore: list[str] | None = None) -> bytes:
    """Pack a directory into a deterministic tar.gz (sorted, zeroed times) so equal trees hash equal."""
    import fnmatch
    import gzip

    patterns = ignore or []

    def skipped(rel: str) -> bool:
        parts = rel.split("/")
        return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(parts[0], p) or p.rstrip("/") in parts[:1]
                   for p in patterns)

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for root, dirs, files in os.walk(directory):
            dirs.sort()
            for name in sorted(files):
                full = Path(root) / name
                rel = full.relative_to(directory).as_posix()
                if skipped(rel):
                    continue
                info = tar.gettarinfo(str(full), arcname=rel)
                info.mtime = 0
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if info.isreg():
                    with open(full, "rb") as fh:
                        tar.addfile(info, fh)
                elif info.issym():
                    tar.addfile(info)
    return gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)


def read_ignore(directory: Path) -> list[str]:
    patterns = [".git", ".roost"]
    for name in (".roostignore", ".dockerignore"):
        path = directory / name
        if path.exists():
            patterns += [line.strip() for line in path.read_text().splitlines()
                         if line.strip() and not line.startswith("#")]
            break
    return patterns


def procfile_command(directory: Path) -> list[str]:
    procfile = directory / "Procfile"
    if not procfile.exists():
        return []
    for line in procfile.read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() == "web":
            return shlex.split(command.strip())
    return []


def push(api: Api, directory: Path, name: str, cmd: list[str] | None = None) -> dict[str, Any]:
    if not directory.is_dir():
        raise UserError(f"{directory} is not a directory: 'roost image push' packs a directory into an image")
    command = cmd if cmd is not None else procfile_command(directory)
    bundle = bundle_directory(directory, read_ignore(directory))
    params = {"name": name}
    if command:
        params["cmd"] = json.dumps(command)
    return dict(api.post("/v1/images", params=params, content=bundle,
                         headers={"Content-Type": "application/gzip"}))
