"""The agent's image cache (agent/images.py): an image that would unpack past the host's limit is refused before
a byte is written, and images no machine uses are removed, but never one a start is using."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from roost.agent.images import ImageCache, ImageError


def bundle(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_an_image_unpacking_past_the_limit_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    bomb = bundle(tmp_path / "bomb.tar.gz", {"zeros": bytes(3 * 1024 * 1024)})  # compresses to a few KB
    assert bomb.stat().st_size < 64 * 1024
    with pytest.raises(ImageError, match="over this host's limit"):
        ImageCache._unpack(bomb, root / "sha256-bomb", limit=1024 * 1024)
    assert list(root.iterdir()) == []  # no target, no staging left behind
    ImageCache._unpack(bomb, root / "sha256-ok", limit=4 * 1024 * 1024)
    assert (root / "sha256-ok" / "zeros").stat().st_size == 3 * 1024 * 1024


def test_unused_images_are_collected_but_not_one_a_start_holds(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "images", "http://127.0.0.1:1", "t")
    for name in ("aaa", "bbb", "ccc"):
        (cache.path(f"sha256:{name}")).mkdir()
    with cache.hold("sha256:ccc"):
        removed = cache.collect({"sha256:aaa"})
    assert removed == ["sha256:bbb"]
    assert cache.path("sha256:aaa").is_dir() and cache.path("sha256:ccc").is_dir()
    assert cache.collect({"sha256:aaa"}) == ["sha256:ccc"]  # no longer held
