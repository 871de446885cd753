"""Images the tests build offline: a busybox-static root (a shell, httpd, ps) for the container driver."""

from __future__ import annotations

import shutil
from pathlib import Path

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
