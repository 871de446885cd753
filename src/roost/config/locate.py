"""Where in a fly.toml a problem is: the line of the key a message names (`services[1].protocol: ...`), found
in the text, since TOML parsers keep no positions. Best effort: the key's line, else its table's, else None."""

from __future__ import annotations

import re

_PATH = re.compile(r"^([A-Za-z_][\w.\[\]-]*):")
_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([\w\"'.-]+)\s*=")


def locate(text: str, message: str) -> int | None:
    """The 1-based line of the key `message` starts with, or None."""
    match = _PATH.match(message)
    if not match:
        return None
    parts = _split(match.group(1))
    if not parts:
        return None
    lines = text.splitlines()
    # Try the longest table prefix first: services[1].ports[0].port -> table services#1, key ports ...
    for cut in range(len(parts), -1, -1):
        table, key = parts[:cut], parts[cut] if cut < len(parts) else None
        span = _table_span(lines, table)
        if span is None:
            continue
        start, end = span
        if key is not None:
            name = key[0]
            for n in range(start, end):
                found = _KEY.match(lines[n])
                if found and found.group(1).strip("\"'").split(".")[0] == name:
                    return n + 1
        if table:
            return start  # the header's line (start is the line after it, 1-based it is the header)
    return None


def _split(path: str) -> list[tuple[str, int | None]]:
    """'services[1].protocol' -> [('services', 1), ('protocol', None)]."""
    out: list[tuple[str, int | None]] = []
    for piece in path.split("."):
        m = re.fullmatch(r"([\w-]+)(?:\[(\d+)\])?", piece)
        if not m:
            return []
        out.append((m.group(1), int(m.group(2)) if m.group(2) is not None else None))
    return out


def _table_span(lines: list[str], table: list[tuple[str, int | None]]) -> tuple[int, int] | None:
    """(first line index after the table's header, index where the next header starts); the top level for []."""
    want = ".".join(name for name, _ in table)
    index = next((i for _, i in reversed(table) if i is not None), None) if table else None
    seen = -1
    start: int | None = 0 if not table else None
    for n, line in enumerate(lines):
        header = _HEADER.match(line)
        if not header:
            continue
        if start is not None:
            return start, n
        if header.group(2) == want:
            seen += 1
            if index is None or seen == index:
                start = n + 1
    return (start, len(lines)) if start is not None else None
