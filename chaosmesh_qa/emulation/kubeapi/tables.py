"""``kubectl get``'s table view (``Accept: ...;as=Table;g=meta.k8s.io;v=v1``) of the emulation's objects.

``server`` calls ``to_table`` when a get or list asks for a Table; every row carries the full object,
so ``--show-labels`` and label columns work.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from chaosmesh_qa.emulation.kubeapi.resources import Resource


def _age(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    born = dt.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    seconds = int((dt.datetime.now(dt.UTC) - born).total_seconds())
    if seconds < 120:
        return f"{max(seconds, 0)}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def _column(name: str, kind: str = "string", fmt: str = "") -> dict[str, Any]:
    return {"name": name, "type": kind, "format": fmt, "description": "", "priority": 0}


def _pod_cells(obj: dict[str, Any]) -> list[Any]:
    statuses = obj.get("status", {}).get("containerStatuses", [])
    ready = sum(1 for s in statuses if s.get("ready"))
    return [f"{ready}/{len(statuses)}", obj.get("status", {}).get("phase", ""),
            sum(s.get("restartCount", 0) for s in statuses)]


def to_table(resource: Resource, result: dict[str, Any]) -> dict[str, Any]:
    items: list[dict[str, Any]] = result.get("items", [result])
    columns = [_column("Name", fmt="name")]
    if resource.name == "pods":
        columns += [_column("Ready"), _column("Status"), _column("Restarts", "integer")]
    columns.append(_column("Age"))
    rows = []
    for obj in items:
        meta = obj.get("metadata", {})
        cells: list[Any] = [meta.get("name", "")]
        if resource.name == "pods":
            cells += _pod_cells(obj)
        cells.append(_age(meta.get("creationTimestamp")))
        rows.append({"cells": cells, "object": obj})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": result.get("metadata", {}).get("resourceVersion", "")},
            "columnDefinitions": columns, "rows": rows}
