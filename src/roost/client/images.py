"""Images as the client makes them: a directory packed into a deterministic, content-addressed bundle, and
pushed to the server's image store."""

from __future__ import annotations

import io
import json
import os
import shlex
import tarfile
from dataclasses import dataclass, field
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


def push(api: Api, directory: Path, name: str, cmd: list[str] | None = None, base: str | None = None,
         bundle: bool = False, dockerfile: Dockerfile | None = None) -> dict[str, Any]:
    """Push an image under `name`: to the fleet's registry as an OCI image when the fleet has one (a directory
    becomes a layer at /app on a base image, or is built with its Dockerfile; an OCI layout or a `docker save`
    tarball goes as it is), else as a bundle kept by the server (the process driver's format)."""
    registry = None if bundle else fleet_registry(api)
    if registry is None:
        if dockerfile is not None:
            raise UserError("this fleet has no registry to push a Dockerfile's image to (roost server --registry)")
        return push_bundle(api, directory, name, cmd)
    return push_oci(api, registry, directory, name, cmd, base, dockerfile)


@dataclass(frozen=True)
class Dockerfile:
    path: Path
    args: dict[str, str] = field(default_factory=dict)
    target: str = ""


def fleet_registry(api: Api) -> str | None:
    """The fleet's registry (HOST:PORT), if it has one; one the server speaks plain HTTP to (loopback, or a
    fleet network's) is marked so for this process's pushes."""
    found = api.request("GET", "/v1/registry", ok_codes=(404,))
    if not (isinstance(found, dict) and found.get("address")):
        return None
    address = str(found["address"])
    if found.get("plain_http"):
        from roost.client import oci_build

        oci_build.PLAIN_HTTP.add(address)
    return address


def push_oci(api: Api, registry: str, source: Path, name: str, cmd: list[str] | None,
             base: str | None, dockerfile: Dockerfile | None = None) -> dict[str, Any]:
    import tempfile

    from roost.client import oci_build
    from roost.core.model import parse_image_name

    _, repository, tag = parse_image_name(name)
    destination = f"{registry}/{repository}:{tag}"
    with tempfile.TemporaryDirectory(prefix="roost-push-") as tmp_name:
        tmp = Path(tmp_name)
        if dockerfile is not None:
            layout, layout_tag = oci_build.dockerfile_image(source, dockerfile.path, tmp / "build", dockerfile.args,
                                                            dockerfile.target)
            oci_build.push(layout, layout_tag, destination)
        elif source.is_file():  # `docker save` (or `podman save`) output
            oci_build.copy_archive(source, destination)
        elif (source / "oci-layout").is_file():
            tags = oci_build.oci_layout_tags(source)
            if len(tags) != 1 and tag not in tags:
                raise UserError(f"{source} is an OCI layout with tags {', '.join(tags) or 'none'}: name one with "
                                f"--name NAME:TAG")
            oci_build.push(source, tag if tag in tags else tags[0], destination)
        elif source.is_dir():
            command = cmd if cmd is not None else procfile_command(source)
            base_image = oci_build.pull_base(base, tmp / "base") if base else oci_build.base_image(cache_dir())
            layout, layout_tag = oci_build.app_image(source, tmp / "work", base_image, command, read_ignore(source))
            oci_build.push(layout, layout_tag, destination)
        else:
            raise UserError(f"{source}: no such directory or file")
    return dict(api.post("/v1/images", params={"name": name}, json={"image": destination}))


def cache_dir() -> Path:
    return Path(os.environ.get("ROOST_CACHE_DIR") or Path.home() / ".cache" / "roost") / "images"


def push_bundle(api: Api, directory: Path, name: str, cmd: list[str] | None = None) -> dict[str, Any]:
    if not directory.is_dir():
        raise UserError(f"{directory} is not a directory: 'roost image push' packs a directory into an image")
    command = cmd if cmd is not None else procfile_command(directory)
    bundle = bundle_directory(directory, read_ignore(directory))
    params = {"name": name}
    if command:
        params["cmd"] = json.dumps(command)
    return dict(api.post("/v1/images", params=params, content=bundle,
                         headers={"Content-Type": "application/gzip"}))
