"""Promises that cannot work: ``chaosmesh-qa explain``'s findings tied to the promise they make unworkable.

``unworkable(found)`` runs ``explain`` on the mesh and ties each warning whose code ``UNWORKABLE`` lists to the
promises (``mesh.promises``) of that kind it names: an AuthorizationPolicy's rules (``CMQ-S004``: the rule that
lets the needless identity in), the routes to a subset (``CMQ-R002``/``R003``), a route's retry budget
(``CMQ-T003``), else the promises of that kind about the finding's service.  Findings of those codes that name
no promise are returned apart.  Called by ``report.coverage`` (uncovered-and-unworkable).
"""

from __future__ import annotations

import re
from typing import Any

from chaosmesh_qa.mesh.explain import explain
from chaosmesh_qa.mesh.promises import Promise, Promises

# explain's codes of a setting that cannot work -> the promise kinds it makes unworkable (mesh/explain*.py)
UNWORKABLE = {
    "CMQ-T001": ("retries",), "CMQ-T002": ("timeout",), "CMQ-T003": ("retries",),
    "CMQ-R002": ("routing", "match"), "CMQ-R003": ("routing", "match"), "CMQ-O002": ("outlier-detection",),
    "CMQ-S001": ("mtls",), "CMQ-S002": ("authz-rule",), "CMQ-S003": ("authz-rule",), "CMQ-S004": ("authz-rule",),
    "CMQ-L001": ("locality",), "CMQ-L002": ("locality",), "CMQ-L003": ("locality",), "CMQ-L004": ("locality",),
}


def unworkable(found: Promises) -> tuple[dict[str, list[dict[str, str]]], list[dict[str, str]]]:
    """Per promise id, the findings that say it cannot work (code, message, location); and those on no promise."""
    findings = [f for f in explain(found.directory)["findings"]
                if f["severity"] == "warning" and f["code"] in UNWORKABLE]
    tied: dict[str, list[dict[str, str]]] = {}
    alone: list[dict[str, str]] = []
    for f in findings:
        shown = {"code": f["code"], "message": f["message"], "location": f["location"]}
        hits = [p for p in found.promises if ties(f, p)]
        for promise in hits:
            if shown not in tied.setdefault(promise.id, []):
                tied[promise.id].append(shown)
        if not hits and shown not in alone:
            alone.append(shown)
    return tied, alone


def ties(finding: dict[str, Any], promise: Promise) -> bool:
    """Does an explain finding name this promise: its kind, and its policy (authorization), subset (routing),
    route (a retry budget) or else its service?"""
    code, location, message = finding["code"], str(finding["location"]), str(finding["message"])
    if promise.kind not in UNWORKABLE[code]:
        return False
    if promise.kind == "authz-rule":
        if f"{promise.source.resource}:" not in location:
            return False
        widened = re.search(r"\(([^()]+)\), which never calls", message) if code == "CMQ-S004" else None
        return widened is None or widened.group(1).removeprefix("spiffe://") in promise.summary
    service = message.split(":", 1)[0].split("/")[0]
    if code in ("CMQ-R002", "CMQ-R003"):
        subset = re.search(r"subset (\S+) selects", message)
        return service == promise.service and subset is not None and f"{service}/{subset.group(1)}" in promise.summary
    if code == "CMQ-T003":
        return location.startswith(f"{promise.source.file}: {promise.source.resource}: ") and \
            location.endswith(f": {promise.source.field}")
    return service == promise.service
