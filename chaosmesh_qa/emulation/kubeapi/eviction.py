"""The Eviction API's PodDisruptionBudget check, as the API server's eviction handler and the disruption
controller make it (kubernetes pkg/registry/core/pod/storage/eviction.go, pkg/controller/disruption).

``server`` calls ``refusal`` for ``POST pods/NAME/eviction`` before it deletes the pod.  The PodDisruptionBudgets of
the pod's namespace whose selector matches its labels decide: none, the eviction proceeds; more than one, the API
server refuses it (500); one, its allowed disruptions are the pods it selects that are Ready less the healthy pods
it needs (``minAvailable``, or the pods expected less ``maxUnavailable``; a percentage of the pods expected,
rounded up), and none left is a 429 naming the budget.  The disruption controller keeps that count in the budget's
status, from the controllers' replica counts; here it is computed at the request, from the pods the emulation
serves (a replacement still starting is expected but not healthy).  Not modelled: ``unhealthyPodEvictionPolicy``
(a pod that is not Ready is judged like the others) and a budget's own status field.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from chaosmesh_qa.emulation.kubeapi.selectors import SelectorError, match_labels
from chaosmesh_qa.emulation.kubeapi.status import ApiError

MESSAGE = "Cannot evict pod as it would violate the pod's disruption budget."


def refusal(pod: dict[str, Any], pods: Sequence[dict[str, Any]], budgets: Sequence[dict[str, Any]]) -> None:
    """Raise what the API server answers when evicting ``pod`` would break its namespace's budget; ``pods`` are
    the namespace's pods, ``budgets`` its PodDisruptionBudgets."""
    labels = pod["metadata"].get("labels") or {}
    mine = [b for b in budgets if _selects(b, labels)]
    if len(mine) > 1:
        raise ApiError(500, "InternalError", "This pod has more than one PodDisruptionBudget, which the eviction "
                                             "subresource does not support.")
    if not mine:
        return
    budget = mine[0]
    selected = [p for p in pods if not p["metadata"].get("deletionTimestamp")
                and _selects(budget, p["metadata"].get("labels") or {})]
    expected, healthy = len(selected), sum(1 for p in selected if _ready(p))
    needed = desired_healthy(budget.get("spec") or {}, expected)
    if healthy - needed <= 0:
        name = budget["metadata"]["name"]
        raise ApiError(429, "TooManyRequests", MESSAGE, {"causes": [{
            "reason": "DisruptionBudget",
            "message": f"The disruption budget {name} needs {needed} healthy pods and has {healthy} currently"}]})


def desired_healthy(spec: dict[str, Any], expected: int) -> int:
    """The healthy pods a budget needs out of ``expected``: ``minAvailable``, or ``expected - maxUnavailable``
    (a percentage of ``expected`` rounded up either way; neither given: every pod, as maxUnavailable 0)."""
    if "minAvailable" in spec:
        return _scaled(spec["minAvailable"], expected)
    if "maxUnavailable" in spec:
        return max(0, expected - _scaled(spec["maxUnavailable"], expected))
    return expected


def _scaled(value: Any, total: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        try:
            return math.ceil(float(value[:-1]) * total / 100)
        except ValueError:
            raise ApiError(422, "Invalid", f"invalid value {value!r} for a PodDisruptionBudget count") from None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ApiError(422, "Invalid", f"invalid value {value!r} for a PodDisruptionBudget count")


def _selects(budget: dict[str, Any], labels: dict[str, str]) -> bool:
    selector = (budget.get("spec") or {}).get("selector")
    if selector is None:  # policy/v1: no selector selects no pod, an empty one every pod of the namespace
        return False
    if not selector:
        return True
    try:
        return match_labels(selector, labels)
    except SelectorError:
        return False


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
