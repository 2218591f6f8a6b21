"""Kubernetes ``Status`` answers: the one error type every part of the API emulation raises.

``store``, ``workloads``, ``apply`` and ``server`` raise ``ApiError``; ``server`` turns it into a
``Status`` object (kind Status, status Failure, reason, code, message) as the real API server does.
"""

from __future__ import annotations

from typing import Any

NOT_IMPLEMENTED = "the chaosmesh-qa Kubernetes API emulation does not implement"


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def body(self) -> dict[str, Any]:
        return status_body(self.code, self.reason, self.message, self.details, "Failure")


def status_body(code: int, reason: str, message: str, details: dict[str, Any] | None = None,
                status: str = "Failure") -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": status,
                            "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return body


def not_found(resource: str, name: str, group: str = "") -> ApiError:
    qualified = f"{resource}.{group}" if group else resource
    return ApiError(404, "NotFound", f'{qualified} "{name}" not found',
                    {"name": name, "group": group, "kind": resource})


def not_implemented(what: str, code: int = 405) -> ApiError:
    reason = "MethodNotAllowed" if code == 405 else "NotFound"
    return ApiError(code, reason, f"{NOT_IMPLEMENTED} {what}")


def invalid(kind: str, name: str, message: str) -> ApiError:
    return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {message}', {"name": name, "kind": kind})
