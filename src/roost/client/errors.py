"""The error a person can act on: one line saying what is wrong and how to fix it (the CLI prints it and exits
with `code`; deploy, scale and drills raise it too)."""

from __future__ import annotations


class UserError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
