"""A Machines API exec request (`POST .../machines/{id}/exec`), checked the same way by the server and by the
host agent: `command` (argv) or the older `cmd` (one string, split as a shell would), `stdin`, `timeout`
(seconds). Pure."""

from __future__ import annotations

import shlex
from typing import Any

from roost.core.errors import bad_request

DEFAULT_TIMEOUT = 30
MAX_TIMEOUT = 600
MAX_ARGS = 4096
MAX_BYTES = 1024 * 1024


def exec_request(body: Any) -> tuple[list[str], bytes, float]:
    if not isinstance(body, dict):
        raise bad_request("body must be {\"command\": [\"ls\", \"-l\"], \"timeout\": 30, \"stdin\": \"...\"}")
    command = body.get("command")
    if command is None and body.get("cmd") is not None:
        if not isinstance(body["cmd"], str):
            raise bad_request("cmd: expected a string (or use command: a list of strings)")
        try:
            command = shlex.split(body["cmd"])
        except ValueError as exc:
            raise bad_request(f"cmd: {exc}") from None
    if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
        raise bad_request("command: expected a non-empty list of strings, e.g. [\"ls\", \"-l\", \"/\"]")
    if len(command) > MAX_ARGS or sum(len(a) for a in command) > MAX_BYTES or any("\x00" in a for a in command):
        raise bad_request("command: too long, or holds a NUL byte")
    stdin = body.get("stdin") or ""
    if not isinstance(stdin, str) or len(stdin) > MAX_BYTES:
        raise bad_request(f"stdin: expected a string of at most {MAX_BYTES} bytes")
    timeout = body.get("timeout", DEFAULT_TIMEOUT)
    if timeout in (None, 0):
        timeout = DEFAULT_TIMEOUT
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= MAX_TIMEOUT:
        raise bad_request(f"timeout: expected seconds between 1 and {MAX_TIMEOUT}")
    return command, stdin.encode(), float(timeout)


DEFAULT_CONSOLE = ["/bin/sh"]


def console_argv(cmd: list[str]) -> list[str]:
    """A console's command (`?cmd=ARG&cmd=ARG`, default a shell), checked as an exec's."""
    if not cmd:
        return list(DEFAULT_CONSOLE)
    if len(cmd) > MAX_ARGS or sum(len(a) for a in cmd) > MAX_BYTES or any("\x00" in a for a in cmd) or not cmd[0]:
        raise bad_request("cmd: a command of at most 4096 arguments, without NUL bytes")
    return list(cmd)
