"""Building OCI images on the client, with the ecosystem's tools: `umoci` to make layouts, layers and configs,
`skopeo` to push, Debian's own packages (`apt-get download`, `dpkg-deb -x`) for the base image. No
internet beyond the Debian mirror the host already uses, no registry client or tar writer of our own.

`roost image push DIR` makes an image of a directory: DIR becomes one layer at /app on a base image, by
default a small Debian root with Python 3 (built once from Debian packages and kept in the cache)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from roost.client.errors import UserError
from roost.registry import RegistryAccess

TIMEOUT = 600.0
# The base image: Python 3, a shell and the core utilities, with what they load, from Debian's packages
# (their dependencies resolved by apt); what only package management or perl need is left out.
BASE_PACKAGES = ("python3-minimal", "libpython3.11-stdlib", "dash", "coreutils")
NOT_IN_BASE = {"dpkg", "install-info", "tar", "mailcap", "mime-support", "libgdbm-compat4", "base-files",
               "debconf", "libdebconfclient0"}
BASE_TAG = "base"
APP_DIR = "/app"
BASE_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "HOME=/app")


def _run(*argv: str, cwd: Path | None = None, timeout: float = TIMEOUT) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False)
    except FileNotFoundError:
        raise UserError(f"{argv[0]} is not installed (./scripts/setup installs it as root on Debian)") from None
    except subprocess.TimeoutExpired:
        raise UserError(f"{' '.join(argv[:3])} took longer than {timeout:.0f} s") from None
    if done.returncode != 0:
        raise UserError(f"{' '.join(argv[:3])}: {done.stderr.strip()[-400:] or done.returncode}")
    return done.stdout


def new_image(layout: Path, tag: str) -> None:
    """An empty image (FROM scratch) in `layout` under `tag`."""
    if not (layout / "index.json").exists():
        _run("umoci", "init", "--layout", str(layout))
    _run("umoci", "new", "--image", f"{layout}:{tag}")


def add_layer(layout: Path, tag: str, source: Path, target: str = "/") -> None:
    """One layer holding `source`'s tree at `target` (owners, modes and links as they are)."""
    _run("umoci", "insert", "--image", f"{layout}:{tag}", str(source), target)


def set_config(layout: Path, tag: str, *, cmd: Sequence[str] = (), env: Sequence[str] = (), workdir: str = "",
               ports: Sequence[str] = (), entrypoint: Sequence[str] | None = None, architecture: str = "") -> None:
    args = ["umoci", "config", "--image", f"{layout}:{tag}"]
    if architecture:
        args.append(f"--architecture={architecture}")
    args += [f"--config.cmd={c}" for c in cmd] + [f"--config.env={e}" for e in env]
    args += [f"--config.exposedports={p}" for p in ports]
    if entrypoint is not None:
        args += [f"--config.entrypoint={e}" for e in entrypoint] or ["--clear=config.entrypoint"]
    if workdir:
        args.append(f"--config.workingdir={workdir}")
    _run(*args)


def copy_layout(source: Path, destination: Path) -> None:
    """A working copy of a layout: blobs are content-addressed and never rewritten, so they are hard-linked."""
    shutil.copytree(source, destination, copy_function=_link_or_copy)


def _link_or_copy(src: str, dst: str) -> None:
    if "/blobs/" in src:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


PLAIN_HTTP: set[str] = set()  # registries (HOST:PORT) the fleet says it speaks plain HTTP to, besides loopback


def _access() -> RegistryAccess:

    return RegistryAccess(insecure=frozenset(PLAIN_HTTP))


def push(layout: Path, tag: str, destination: str) -> None:
    """Copy the image to a registry (`HOST:PORT/REPO:TAG`); loopback registries over plain HTTP."""
    from roost.core.image_ref import parse

    ref = parse(destination)
    _run("skopeo", "copy", "--quiet", *_access().flags(ref, "dest"), f"oci:{layout}:{tag}",
         f"docker://{ref.registry}/{ref.repository}:{ref.tag or 'latest'}")


def copy_archive(archive: Path, destination: str) -> None:
    """A `docker save` tarball to a registry."""
    from roost.core.image_ref import parse

    ref = parse(destination)
    _run("skopeo", "copy", "--quiet", *_access().flags(ref, "dest"), f"docker-archive:{archive}",
         f"docker://{ref.registry}/{ref.repository}:{ref.tag or 'latest'}")


def pull_base(reference: str, layout: Path) -> tuple[Path, str]:
    """A base image given by reference (`--base REF`), fetched into a layout of its own."""
    from roost.core.image_ref import ImageRefError, parse

    try:
        ref = parse(reference)
    except ImageRefError as exc:
        raise UserError(f"--base: {exc}") from None
    _run("skopeo", "copy", "--quiet", *_access().flags(ref, "src"), "--override-os", "linux",
         "--override-arch", "amd64", ref.transport if not ref.digest else
         f"docker://{ref.registry}/{ref.repository}@{ref.digest}", f"oci:{layout}:{BASE_TAG}")
    return layout, BASE_TAG


def _base_packages(wanted: Sequence[str]) -> list[str]:
    try:
        return _depends(wanted)
    except UserError:
        if os.geteuid() != 0:
            raise
        _run("apt-get", "update", "-qq", timeout=TIMEOUT)  # a fresh host may have no package lists yet
        return _depends(wanted)


def _depends(wanted: Sequence[str]) -> list[str]:
    out = _run("apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
               "--no-breaks", "--no-replaces", "--no-enhances", *wanted, timeout=120)
    names = {line.strip() for line in out.splitlines() if line and line[0].isalnum()}
    return sorted(n for n in names if n not in NOT_IN_BASE and not n.startswith(("perl", "libperl")))


def base_image(cache: Path, extra_packages: Sequence[str] = ()) -> tuple[Path, str]:
    """The default base image (an OCI layout and tag), built once from Debian packages and cached by the
    packages' exact versions; `extra_packages` (with what they need) on top, e.g. python3-venv."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise UserError("the default base image is built from Debian packages, and this host has no apt-get; "
                        "give a base image with --base REF")
    packages = _base_packages([*BASE_PACKAGES, *extra_packages])
    versions = _run("dpkg-query", "--version", timeout=30) + _run("apt-cache", "policy", *packages, timeout=120)
    key = hashlib.sha256(("\n".join(packages) + versions).encode()).hexdigest()[:16]
    layout = cache / f"base-{key}"
    if (layout / "index.json").exists():
        return layout, BASE_TAG
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".build-") as tmp_name:
        tmp = Path(tmp_name)
        debs, root = tmp / "debs", tmp / "root"
        debs.mkdir()
        root.mkdir()
        _run("apt-get", "download", "-q", *packages, cwd=debs, timeout=TIMEOUT)
        for deb in sorted(debs.glob("*.deb")):
            _run("dpkg-deb", "-x", str(deb), str(root))
        _finish_root(root)
        staging = tmp / "layout"
        new_image(staging, BASE_TAG)
        add_layer(staging, BASE_TAG, root)
        set_config(staging, BASE_TAG, env=BASE_ENV, workdir=APP_DIR, cmd=["python3"])
        with contextlib.suppress(FileExistsError, OSError):
            staging.rename(layout)  # another build may have finished first: theirs is the same image
    return layout, BASE_TAG


def _finish_root(root: Path) -> None:
    """What the packages' install scripts would have made: /bin/sh, users, /tmp, the app's directory."""
    (root / "bin").mkdir(exist_ok=True)
    sh = root / "bin" / "sh"
    if not sh.exists():
        sh.symlink_to("dash")
    etc = root / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    for name in ("tmp", "app", "root", "var/tmp"):
        (root / name).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)


def app_image(directory: Path, work: Path, base: tuple[Path, str], cmd: Sequence[str],
              ignore: Sequence[str] = ()) -> tuple[Path, str]:
    """An image of `directory` at /app on `base` (a layout and tag), in a new layout under `work`."""
    layout, tag = work / "layout", "app"
    copy_layout(base[0], layout)
    if base[1] != tag:
        _run("umoci", "tag", "--image", f"{layout}:{base[1]}", tag)
    staged = work / "app"
    shutil.copytree(directory, staged, symlinks=True, ignore=shutil.ignore_patterns(*ignore) if ignore else None)
    add_layer(layout, tag, staged, APP_DIR)
    set_config(layout, tag, workdir=APP_DIR, cmd=list(cmd) if cmd else [])
    return layout, tag


def dockerfile_image(context: Path, dockerfile: Path, work: Path, args: dict[str, str] | None = None,
                     target: str = "") -> tuple[Path, str]:
    """Build a Dockerfile with buildah (no daemon; its storage is private to this build and removed after),
    into an OCI layout under `work`."""
    if shutil.which("buildah") is None:
        raise UserError("building a Dockerfile needs buildah (apt-get install buildah; ./scripts/setup installs it "
                        "as root), or push an image you built with 'roost deploy --image REF'")
    if not dockerfile.is_file():
        raise UserError(f"no Dockerfile at {dockerfile}")
    storage, runroot, layout = work / "storage", work / "run", work / "layout"
    buildah = ["buildah", "--storage-driver", "vfs", "--root", str(storage), "--runroot", str(runroot)]
    build = [*buildah, "bud", "--isolation", "chroot", "--quiet", "--file", str(dockerfile), "--tag",
             "localhost/roost-build:latest", *[f"--build-arg={k}={v}" for k, v in (args or {}).items()]]
    if target:
        build += ["--target", target]
    try:
        _run(*build, str(context))
        _run(*buildah, "push", "--quiet", "localhost/roost-build:latest", f"oci:{layout}:app")
    finally:
        for path in (storage, runroot):  # vfs layers are plain directories
            shutil.rmtree(path, ignore_errors=True)
    return layout, "app"


def oci_layout_tags(path: Path) -> list[str]:
    """The tags of an OCI layout directory (one `roost image push` may be given as it is)."""
    try:
        index = json.loads((path / "index.json").read_text())
    except (OSError, ValueError):
        return []
    names = [(m.get("annotations") or {}).get("org.opencontainers.image.ref.name")
             for m in index.get("manifests") or []]
    return [str(n) for n in names if n]
