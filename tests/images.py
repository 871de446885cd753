"""Images the tests build offline: a busybox-static root (a shell, httpd, ps) for the container driver."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from roost.client import oci_build

BUSYBOX = "/usr/bin/busybox"  # Debian's busybox-static (./scripts/setup installs it)
APPLETS = ("sh", "httpd", "ls", "ps", "cat", "id", "hostname", "sleep", "echo", "wget", "env", "kill", "true",
           "nc", "mkdir", "touch", "ip")


def busybox_rootfs(root: Path) -> Path:
    """A minimal root filesystem: /bin/busybox, its applets in /bin and /usr/bin, /etc/passwd, /tmp."""
    for d in ("bin", "usr/bin", "etc", "tmp", "www"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in APPLETS:
        for d in ("bin", "usr/bin"):
            link = root / d / applet
            if not link.exists():
                link.symlink_to("/bin/busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    (root / "tmp").chmod(0o1777)
    (root / "www" / "index.html").write_text("hello from busybox\n")
    return root


def build_oci_image(layout: Path, tag: str, rootfs: Path, cmd: list[str], env: list[str] | None = None,
                    ports: list[str] | None = None, workdir: str = "") -> None:
    """An OCI image of `rootfs` (one layer, FROM scratch) in the OCI layout `layout` under `tag`, built with umoci
    as `roost image push` builds (no registry, no internet)."""
    oci_build.new_image(layout, tag)
    oci_build.add_layer(layout, tag, rootfs)
    oci_build.set_config(layout, tag, cmd=cmd, env=env or ["PATH=/usr/bin:/bin"], ports=ports or [], workdir=workdir)


def push(layout: Path, tag: str, destination: str) -> str:
    """Copy an image from an OCI layout to a registry on loopback; returns the digest the registry holds."""
    oci_build.push(layout, tag, destination)
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{destination}"], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return str(json.loads(out)["Digest"])
