"""How Roost's components log: to stderr, as text lines or (`--log-format json`, or ROOST_LOG_FORMAT=json, which
a component's children inherit) one JSON object per line for a log shipper."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys

FORMATS = ("text", "json")
ENV = "ROOST_LOG_FORMAT"
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": dt.datetime.fromtimestamp(record.created, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
               "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def check(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: choose {' or '.join(FORMATS)}")
    return fmt


def configure(fmt: str | None = None) -> None:
    """Log INFO and up to stderr in `fmt` (default: $ROOST_LOG_FORMAT, else text); once per process."""
    chosen = fmt or os.environ.get(ENV) or "text"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if chosen == "json" else logging.Formatter(TEXT))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
