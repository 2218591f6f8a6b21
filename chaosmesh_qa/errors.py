"""Semantic exceptions shared by every layer.

Anything a user can cause (a bad mesh file, a bad argument, a fault that cannot be
applied) is one of these, with a one-line message that names the file, resource,
field or argument at fault.  The CLI turns them into exit code 2 without a traceback;
Chaos Toolkit shows their message as the activity's failure.
"""

from __future__ import annotations


class ChaosMeshQAError(Exception):
    """Base class: an error with a message fit to show a user as-is."""


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
    """A CLI or activity argument is out of range or names something unknown."""


class TargetUnavailable(ChaosMeshQAError):
    """The mesh target (local sandbox, cluster) cannot be reached or is not running."""


class SandboxStartError(ChaosMeshQAError):
    """The embedded sandbox failed to start (a process died or never became ready)."""


class FaultRejected(ChaosMeshQAError):
    """A fault cannot be applied: conflicting, unknown target, or not confirmed at the data plane."""


class MeasurementFailed(ChaosMeshQAError):
    """A probe could not measure (Prometheus unreachable, no timeline): never a silent pass."""
