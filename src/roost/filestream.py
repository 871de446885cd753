"""Writing a request body to a file as it arrives, bounded in size and hashed on the way (an image bundle
pushed to the server, a snapshot sent to a host), so nothing is held whole in memory or read twice."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import BinaryIO

from roost.core.errors import RoostError


async def write_hashed(chunks: AsyncIterator[bytes], out: BinaryIO, limit: int, too_large: str) -> tuple[str, int]:
    """Copy the chunks into `out`; (sha256 hex, size). 413 with `too_large` past `limit` bytes."""
    hasher, size = hashlib.sha256(), 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise RoostError(413, too_large)
        hasher.update(chunk)
        out.write(chunk)
    return hasher.hexdigest(), size
