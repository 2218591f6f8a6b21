"""The SLI catalog: named PromQL templates per metrics dialect, loaded from ``probes/<dialect>.yaml``.

The catalog is data (see ``probes/envoy.yaml`` for the format); this module loads one dialect,
validates it, and renders an SLI to a PromQL string with checked parameters.  Probe activities
and verdict code call ``load_catalog(target.metrics_dialect).render("error_ratio", service=...)``
and hand the string to Prometheus; the tests render every SLI against a live sandbox.

Parameter values are checked by kind before they reach a query (service and caller names must
be DNS-1123 labels), so nothing a user passes can change the shape of the PromQL.
"""

from __future__ import annotations

import math
import os
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import chaosmesh_qa
from chaosmesh_qa.errors import InvalidArgument

PROBES_ENV = "CHAOSMESH_QA_PROBES"
NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")  # DNS-1123 label (always fullmatch)
DURATION_RE = re.compile(r"([0-9]+(ms|s|m|h|d|w|y))+")  # Prometheus duration
_IDENT_RE = re.compile(r"[a-z][a-z0-9_]*")
KINDS = ("name", "duration", "quantile", "choice")


@dataclass(frozen=True)
class Param:
    name: str
    kind: str
    description: str
    default: str | None = None
    format: str = "{}"  # applied to non-empty values, e.g. "_{}" for a cluster-name suffix
    choices: tuple[tuple[str, str], ...] = ()  # kind "choice": accepted value -> text in the query


@dataclass(frozen=True)
class SLI:
    name: str
    description: str
    unit: str
    params: tuple[str, ...]
    query: str


@dataclass(frozen=True)
class Catalog:
    dialect: str
    exercised: bool
    description: str
    params: dict[str, Param]
    slis: dict[str, SLI]
    path: Path

    def names(self) -> list[str]:
        return sorted(self.slis)

    def render(self, name: str, **params: Any) -> str:
        """The PromQL of SLI ``name``; defaults fill omitted parameters, unknown ones are refused."""
        sli = self.slis.get(name)
        if sli is None:
            raise InvalidArgument(f"unknown SLI {name!r} in the {self.dialect} catalog "
                                  f"(known: {', '.join(self.names())})")
        for key in params:
            if key not in sli.params:
                raise InvalidArgument(f"SLI {name!r}: unknown parameter {key!r} "
                                      f"(expected: {', '.join(sli.params)})")
        values: dict[str, str] = {}
        for key in sli.params:
            param = self.params[key]
            if key in params and params[key] is not None:
                values[key] = _check_value(param, params[key], f"SLI {name!r}: parameter {key!r}")
            elif param.default is not None:
                values[key] = _check_value(param, param.default, f"SLI {name!r}: parameter {key!r}")
            else:
                raise InvalidArgument(f"SLI {name!r}: missing parameter {key!r}")
        return sli.query.format(**values)


def default_probes_dir() -> Path:
    """``$CHAOSMESH_QA_PROBES``, else ``probes/`` next to the ``chaosmesh_qa`` package (the repo root)."""
    explicit = os.environ.get(PROBES_ENV)
    if explicit:
        return Path(explicit)
    return Path(chaosmesh_qa.__file__).resolve().parent.parent / "probes"


def load_catalog(dialect: str = "envoy", probes_dir: Path | str | None = None) -> Catalog:
    """Load and validate ``<probes_dir>/<dialect>.yaml``; raise InvalidArgument on any problem."""
    if not _IDENT_RE.fullmatch(dialect):
        raise InvalidArgument(f"metrics dialect {dialect!r} is not a valid name")
    directory = Path(probes_dir) if probes_dir is not None else default_probes_dir()
    path = directory / f"{dialect}.yaml"
    if not path.is_file():
        raise InvalidArgument(f"{path}: no SLI catalog for dialect {dialect!r} (set {PROBES_ENV} "
                              "or pass probes_dir)")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidArgument(f"{path}: unreadable SLI catalog ({' '.join(str(exc).split())})") from None
    return parse_catalog(doc, path, dialect)


def parse_catalog(doc: Any, path: Path, dialect: str) -> Catalog:
    """Validate an already parsed catalog document (``path`` only names it in errors)."""
    where = str(path)
    top = _mapping(doc, where, {"dialect", "exercised", "description", "params", "slis"})
    if top.get("dialect") != dialect:
        raise InvalidArgument(f"{where}: 'dialect' must be {dialect!r}, got {top.get('dialect')!r}")
    if not isinstance(top.get("exercised"), bool):
        raise InvalidArgument(f"{where}: 'exercised' must be true or false")
    raw_params = _mapping(top.get("params"), f"{where}: params", None)
    params = {key: _parse_param(key, value, f"{where}: param {key!r}") for key, value in raw_params.items()}
    raw_slis = _mapping(top.get("slis"), f"{where}: slis", None)
    if not raw_slis:
        raise InvalidArgument(f"{where}: 'slis' is empty")
    slis = {key: _parse_sli(key, value, params, f"{where}: SLI {key!r}") for key, value in raw_slis.items()}
    return Catalog(dialect, top["exercised"], _text(top, "description", where), params, slis, path)


def _parse_param(key: Any, raw: Any, where: str) -> Param:
    if not isinstance(key, str) or not _IDENT_RE.fullmatch(key):
        raise InvalidArgument(f"{where}: not a valid parameter name")
    spec = _mapping(raw, where, {"kind", "description", "default", "format", "choices"})
    kind = spec.get("kind")
    if kind not in KINDS:
        raise InvalidArgument(f"{where}: 'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
    fmt = spec.get("format", "{}")
    if not isinstance(fmt, str) or fmt.count("{}") != 1 or fmt.replace("{}", "").count("{"):
        raise InvalidArgument(f"{where}: 'format' must be a string holding '{{}}' once")
    choices: tuple[tuple[str, str], ...] = ()
    if kind == "choice":
        raw_choices = _mapping(spec.get("choices"), f"{where}: choices", None)
        if not raw_choices or not all(isinstance(v, str) and NAME_RE.fullmatch(str(k)) and _IDENT_RE.fullmatch(v.lower())
                                      for k, v in raw_choices.items()):
            raise InvalidArgument(f"{where}: 'choices' must map values to identifiers")
        choices = tuple((str(k), v) for k, v in raw_choices.items())
    elif "choices" in spec:
        raise InvalidArgument(f"{where}: 'choices' is only for kind 'choice'")
    default = spec.get("default")
    param = Param(str(key), kind, _text(spec, "description", where),
                  None if default is None else str(default), fmt, choices)
    if param.default is not None:
        _check_value(param, param.default, f"{where}: default")
    return param


def _parse_sli(key: Any, raw: Any, params: dict[str, Param], where: str) -> SLI:
    if not isinstance(key, str) or not _IDENT_RE.fullmatch(key):
        raise InvalidArgument(f"{where}: not a valid SLI name")
    spec = _mapping(raw, where, {"description", "unit", "params", "query"})
    names = spec.get("params")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise InvalidArgument(f"{where}: 'params' must be a list of distinct parameter names")
    for name in names:
        if name not in params:
            raise InvalidArgument(f"{where}: parameter {name!r} is not declared under 'params'")
    query = _text(spec, "query", where)
    try:
        fields = [(f, s, c) for _, f, s, c in string.Formatter().parse(query) if f is not None]
    except ValueError as exc:
        raise InvalidArgument(f"{where}: bad template ({exc}; double literal braces)") from None
    for field, spec_, conversion in fields:
        if spec_ or conversion or not _IDENT_RE.fullmatch(field):
            raise InvalidArgument(f"{where}: placeholder {{{field}}} must be a plain {{name}}")
    used = {f for f, _, _ in fields}
    if used != set(names):
        raise InvalidArgument(f"{where}: placeholders {sorted(used)} do not match params {sorted(names)}")
    return SLI(key, _text(spec, "description", where), _text(spec, "unit", where), tuple(names), query)


def _check_value(param: Param, value: Any, where: str) -> str:
    """The text put into the query for ``value``, or InvalidArgument naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidArgument(f"{where}: {value!r} is not a {param.kind}")
    text = value if isinstance(value, str) else repr(value)
    if param.kind == "name":
        if text == "" and param.default == "":
            return ""
        if not isinstance(value, str) or not NAME_RE.fullmatch(text):
            raise InvalidArgument(f"{where}: {value!r} is not a DNS-1123 name (lowercase letters, digits, '-')")
    elif param.kind == "duration":
        if not DURATION_RE.fullmatch(text):
            raise InvalidArgument(f"{where}: {value!r} is not a Prometheus duration such as 10s or 1m")
    elif param.kind == "quantile":
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not 0 < number < 1:
            raise InvalidArgument(f"{where}: {value!r} is not a quantile strictly between 0 and 1")
        text = repr(number)
    else:
        mapping = dict(param.choices)
        if text not in mapping:
            raise InvalidArgument(f"{where}: {value!r} is not one of {', '.join(mapping)}")
        text = mapping[text]
    return param.format.format(text)


def _mapping(value: Any, where: str, allowed: set[str] | None) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise InvalidArgument(f"{where}: expected a mapping")
    if allowed is not None:
        unknown = sorted(str(k) for k in value if k not in allowed)
        if unknown:
            raise InvalidArgument(f"{where}: unknown field {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
    return value


def _text(spec: dict[Any, Any], key: str, where: str) -> str:
    value = spec.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"{where}: {key!r} must be a non-empty string")
    return value.strip()
