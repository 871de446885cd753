"""The one error type the cores raise; the API edge turns it into Fly's error JSON."""

from __future__ import annotations


class RoostError(Exception):
    """A request that cannot be done, with the HTTP status Fly would answer and Fly's error `status` code."""

    def __init__(self, status: int, message: str, fly_status: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fly_status = fly_status

    def to_json(self) -> dict[str, str]:
        body = {"error": self.message}
        if self.fly_status:
            body["status"] = self.fly_status
        return body


def bad_request(message: str) -> RoostError:
    return RoostError(400, message)


def not_found(message: str) -> RoostError:
    return RoostError(404, message)


def conflict(message: str) -> RoostError:
    return RoostError(409, message)


def precondition(message: str, fly_status: str | None = None) -> RoostError:
    return RoostError(412, message, fly_status)


def unprocessable(message: str) -> RoostError:
    return RoostError(422, message)


def insufficient_capacity(message: str) -> RoostError:
    return RoostError(412, message, "insufficient_capacity")
