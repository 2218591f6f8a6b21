"""Kubernetes label and field selectors, parsed from the query string the way the API server reads them.

``server`` calls ``label_matcher`` / ``field_matcher`` for every list and watch; ``apply`` uses
``match_labels`` / ``match_expressions`` on the selectors inside NetworkPolicies.  A selector the
emulation cannot read raises ``SelectorError`` (the server answers a 400 ``Status`` naming it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Matcher = Callable[[dict[str, Any]], bool]
_TERM = re.compile(r"^\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9._/-]+)\s*"
                   r"(?:(?P<op>==|=|!=|\s+in\s+|\s+notin\s+)\s*(?P<value>\([^)]*\)|[A-Za-z0-9._-]*))?\s*$")
FIELDS = {"metadata.name": ("metadata", "name"), "metadata.namespace": ("metadata", "namespace"),
          "status.phase": ("status", "phase"), "spec.nodeName": ("spec", "nodeName")}


class SelectorError(ValueError):
    pass


def _split(selector: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [t for t in terms if t.strip()]


def _term(text: str) -> Callable[[dict[str, str]], bool]:
    match = _TERM.match(text)
    if match is None or (match["neg"] and match["op"]):
        raise SelectorError(f"unable to parse requirement {text.strip()!r}")
    key, op, value = match["key"], (match["op"] or "").strip(), match["value"]
    if match["neg"]:
        return lambda labels: key not in labels
    if not op:
        return lambda labels: key in labels
    if op in ("in", "notin"):
        if not (value and value.startswith("(")):
            raise SelectorError(f"{text.strip()!r}: '{op}' needs a parenthesised list of values")
        values = {v.strip() for v in value[1:-1].split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if value is None or value.startswith("("):
        raise SelectorError(f"{text.strip()!r}: '{op}' needs a single value")
    if op == "!=":
        return lambda labels: labels.get(key) != value
    return lambda labels: labels.get(key) == value


def label_matcher(selector: str | None) -> Matcher:
    terms = [_term(t) for t in _split(selector or "")]
    return lambda obj: all(term(obj.get("metadata", {}).get("labels") or {}) for term in terms)


def field_matcher(selector: str | None) -> Matcher:
    checks: list[tuple[tuple[str, str], bool, str]] = []
    for text in _split(selector or ""):
        match = re.match(r"^\s*([A-Za-z.]+)\s*(==|=|!=)\s*(\S*)\s*$", text)
        if match is None:
            raise SelectorError(f"unable to parse field selector {text.strip()!r}")
        if match[1] not in FIELDS:
            raise SelectorError(f"field selector on {match[1]!r} is not supported "
                                f"(supported: {', '.join(FIELDS)})")
        checks.append((FIELDS[match[1]], match[2] != "!=", match[3]))

    def matches(obj: dict[str, Any]) -> bool:
        return all((str(obj.get(part, {}).get(name, "")) == value) == equal
                   for (part, name), equal, value in checks)

    return matches


def match_labels(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A LabelSelector object (matchLabels + matchExpressions) against labels; empty selects all."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    return all(match_expression(e, labels) for e in selector.get("matchExpressions") or [])


def match_expression(expression: dict[str, Any], labels: dict[str, str]) -> bool:
    key, op, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
    if op == "In":
        return labels.get(str(key)) in values
    if op == "NotIn":
        return labels.get(str(key)) not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    raise SelectorError(f"matchExpressions operator {op!r} is not one of In, NotIn, Exists, DoesNotExist")
