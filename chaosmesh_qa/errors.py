"""Semantic exceptions shared by every layer: the one error hierarchy of chaosmesh-qa.

Anything a user can cause (a bad mesh file, a bad argument, a fault that cannot be
applied) is one of these, with a one-line message that names the file, resource,
field or argument at fault.  The CLI (``chaosmesh_qa.cli``) turns them into one line on
stderr and exit code 2 without a traceback; Chaos Toolkit shows their message as the
activity's failure.  Raised everywhere in the package; argument checks come from
``chaosmesh_qa.checks``.

::

    ChaosMeshQAError                 anything a user may see, one line
    ├── InvalidMeshConfig            a mesh definition (Mesh kind, Istio resource) is invalid
    ├── InvalidArgument              an action/probe/CLI argument or a traffic profile field is invalid
    ├── TargetUnavailable            the mesh target cannot be reached or is not running
    ├── SandboxStartError            the embedded sandbox failed to start
    │   └── ProcessNotReady          a child process died or never became ready (targets.local.processes)
    ├── FaultRejected                a fault cannot be applied (conflict, unknown target, unconfirmed)
    ├── TrafficError                 Locust traffic could not start or never settled
    └── MeasurementFailed            a probe could not measure: never a silent pass
        └── TimelineError            the client traffic timeline is missing or has nothing to measure

Messages are kept to one line: a line break in a message (a user's value quoted in it,
say) is shown escaped.
"""

from __future__ import annotations

__all__ = ["ChaosMeshQAError", "FaultRejected", "InvalidArgument", "InvalidMeshConfig", "MeasurementFailed",
           "ProcessNotReady", "SandboxStartError", "TargetUnavailable", "TimelineError", "TrafficError",
           "collapsed", "error_line", "one_line"]


def one_line(text: str) -> str:
    """``text`` on one line: every line break ``str.splitlines`` sees (\\n, \\r, \\f, \\v, ...) shown as ``\\n``."""
    lines = text.splitlines()
    return text if "".join(lines) == text else "\\n".join(lines)


def collapsed(text: str | bytes) -> str:
    """``text`` with every run of whitespace, line breaks included, as one space: another program's
    message (YAML's, Envoy's, the API server's) quoted inside one of ours."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(text.split())


def error_line(exc: BaseException | str, limit: int = 500) -> str:
    """An error as one line of at most ``limit`` characters; an exception that is not one of ours is
    prefixed by its type (``TimeoutError`` says more than its empty message)."""
    text = collapsed(str(exc)) or type(exc).__name__
    if isinstance(exc, BaseException) and not isinstance(exc, ChaosMeshQAError) and type(exc).__name__ not in text:
        text = f"{type(exc).__name__}: {text}"
    return text[:limit]


class ChaosMeshQAError(Exception):
    """Base class: an error with a one-line message fit to show a user as-is."""

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str):
            args = (one_line(args[0]),)
        super().__init__(*args)


class InvalidMeshConfig(ChaosMeshQAError):
    """The mesh definition (Mesh kind or an Istio resource) is invalid.

    ``problems`` holds every problem found, one line each; ``str()`` shows the first
    (and how many more there are) so a CLI can print a single line.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems or ["invalid mesh configuration"]
        more = f" (+{len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(self.problems[0] + more)


class InvalidArgument(ChaosMeshQAError):
    """A CLI or activity argument, or a traffic profile field, is malformed, out of range or unknown."""


class TargetUnavailable(ChaosMeshQAError):
    """The mesh target (local sandbox, cluster) cannot be reached or is not running."""


class SandboxStartError(ChaosMeshQAError):
    """The embedded sandbox failed to start (a process died or never became ready)."""


class ProcessNotReady(SandboxStartError):
    """A child process of the sandbox exited before it became ready, or was not ready in time."""


class FaultRejected(ChaosMeshQAError):
    """A fault cannot be applied: conflicting, unknown target, or not confirmed at the data plane."""


class TrafficError(ChaosMeshQAError):
    """Traffic could not start, or did not reach the profile's rate in time."""


class MeasurementFailed(ChaosMeshQAError):
    """A probe could not measure (Prometheus unreachable, no timeline): never a silent pass."""


class TimelineError(MeasurementFailed):
    """The traffic timeline cannot be measured: missing, empty, or no requests where some were expected."""
