"""What ``generate`` writes: ``Generated`` (one experiment and the promises it is written for), ``Suite`` (all of them
and what is left out, with why), and ``shell``, the experiment every planner fills in.

Used by ``scaffold.suite`` (the planner and the files) and ``scaffold.outages`` (a zone or a ServiceEntry host
taken away).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chaosmesh_qa.scaffold.experiment import _action, _controls

LATENCY_HOLD_S = 6  # the shipped latency-circuit-breaker's: the delay held, then healed


@dataclass
class Generated:
    name: str
    experiment: dict[str, Any]
    covers: list[str] = field(default_factory=list)  # the promise ids it is written for
    error_s: int | None = None  # seconds it fails clients by design (its game day stop is sized from it)
    local_only: str | None = None  # why a cluster's game day leaves it out


@dataclass(frozen=True)
class Suite:
    mesh: str
    experiments: tuple[Generated, ...]
    skipped: tuple[tuple[str, str], ...]  # promise id, why no experiment is written for it


def shell(title: str, description: str, tags: list[str], configuration: dict[str, Any],
           probes: list[dict[str, Any]], method: list[dict[str, Any]]) -> dict[str, Any]:
    return {"version": "1.0.0", "title": title, "description": description, "tags": ["chaosmesh-qa", *tags],
            "configuration": configuration, "runtime": {"rollbacks": {"strategy": "always"}}, "controls": _controls(),
            "steady-state-hypothesis": {"title": title, "probes": probes}, "method": method,
            "rollbacks": [_action("heal-every-fault-of-this-run", "heal")]}
