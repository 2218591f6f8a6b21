"""The SLI catalog: named PromQL templates per metrics dialect, loaded from ``probes/<dialect>.yaml``.

Loads and validates one dialect's catalog (the data format is documented in ``probes/envoy.yaml``) and
renders an SLI to PromQL.  Probe activities and verdict code call
``load_catalog(dialect).render("error_ratio", service="catalog")`` and send the string to Prometheus.
Parameters are checked by kind first (names must be DNS-1123 labels), so no value can reshape a query.
"""

from __future__ import annotations

import functools
import math
import os
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

import chaosmesh_qa
from chaosmesh_qa.errors import InvalidArgument

PROBES_ENV = "CHAOSMESH_QA_PROBES"
NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")  # DNS-1123 label; always used with fullmatch
DURATION_RE = re.compile(r"([0-9]+(ms|s|m|h|d|w|y))+")  # Prometheus duration
IDENT_RE = re.compile(r"[a-z][a-z0-9_]*")
QUANTILE_RE = re.compile(r"0?\.[0-9]+")
UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
KINDS = ("name", "duration", "quantile", "choice")


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # one of KINDS
    description: str
    default: str | None = None  # None: required; "" (kind name only): optional, renders as ""
    format: str = "{}"  # applied to a non-empty value, e.g. "_{}" for a cluster-name suffix
    choices: tuple[tuple[str, str], ...] = ()  # kind "choice": accepted value -> text in the query
    aliases: tuple[tuple[str, str], ...] = ()  # kind "name": the dialect's own name for a value ("ingress")


@dataclass(frozen=True)
class SLI:
    name: str
    description: str
    unit: str
    params: tuple[str, ...]
    query: str  # str.format template
    when_absent: str = ""  # no series at all is a failed measurement, and this says why (not "none counted")


@dataclass(frozen=True)
class Catalog:
    dialect: str
    exercised: bool  # False: never run against real data of this dialect yet
    description: str
    params: dict[str, Param]
    slis: dict[str, SLI]
    path: Path
    latency_buckets_ms: tuple[float, ...]  # histogram bucket bounds: what latency SLOs can resolve

    def bucket_gap(self, limit_ms: float) -> tuple[float, float] | None:
        """The buckets ``(lower, upper)`` around a latency threshold they cannot resolve, else ``None``.

        ``histogram_quantile`` interpolates linearly inside a bucket: a threshold on a bucket bound is
        measured; one inside a bucket wider than a quarter of the threshold is mostly interpolation.
        """
        if limit_ms in self.latency_buckets_ms:
            return None
        lower = max((b for b in self.latency_buckets_ms if b < limit_ms), default=0.0)
        upper = min((b for b in self.latency_buckets_ms if b > limit_ms), default=math.inf)
        return (lower, upper) if upper - lower > 0.25 * limit_ms else None

    def with_aliases(self, param: str, names: Mapping[str, str]) -> Catalog:
        """This catalog with more of the dialect's own names for values of ``param`` (a cluster's, say: the
        canonical service a Helm chart's pods are known by in Istio's metrics, for the name of their Service)."""
        known = self.params.get(param)
        if known is None or not names:
            return self
        aliases = tuple(sorted({**dict(known.aliases), **dict(names)}.items()))  # the target's names win
        return replace(self, params={**self.params, param: replace(known, aliases=aliases)})

    def render(self, name: str, **params: Any) -> str:
        """The PromQL of SLI ``name``; defaults fill omitted parameters, unknown ones are refused."""
        sli = self.slis.get(name)
        if sli is None:
            raise InvalidArgument(f"unknown SLI {name!r} in the {self.dialect} catalog "
                                  f"(known: {', '.join(sorted(self.slis))})")
        for key in params:
            if key not in sli.params:
                raise InvalidArgument(f"SLI {name!r}: unknown parameter {key!r} (expected: {', '.join(sli.params)})")
        values: dict[str, str] = {}
        for key in sli.params:
            param, value = self.params[key], params.get(key)
            if value is None and param.default is None:
                raise InvalidArgument(f"SLI {name!r}: missing parameter {key!r}")
            values[key] = check_value(param, param.default if value is None else value,
                                      f"SLI {name!r}: parameter {key!r}")
            if param.kind == "duration":  # a duration also provides {<name>_seconds}
                values[f"{key}_seconds"] = f"{seconds(values[key]):g}"
        return sli.query.format(**values)


def seconds(duration: str) -> float:
    """Seconds in a Prometheus duration such as ``1m30s``."""
    return sum(int(n) * UNIT_S[unit] for n, unit in re.findall(r"([0-9]+)(ms|s|m|h|d|w|y)", duration))


def default_probes_dir() -> Path:
    """``$CHAOSMESH_QA_PROBES``, else the catalog shipped in the package (``probes/`` in the repo links to it)."""
    explicit = os.environ.get(PROBES_ENV)
    return Path(explicit) if explicit else Path(chaosmesh_qa.__file__).resolve().parent / "sli"


def load_catalog(dialect: str = "envoy", probes_dir: Path | str | None = None) -> Catalog:
    """Load and validate ``<probes_dir>/<dialect>.yaml``; any problem is one InvalidArgument line."""
    if not IDENT_RE.fullmatch(dialect):
        raise InvalidArgument(f"metrics dialect {dialect!r} is not a valid name")
    path = Path(probes_dir if probes_dir is not None else default_probes_dir()) / f"{dialect}.yaml"
    try:
        stat = path.stat()
    except OSError:
        stat = None
    if stat is None or not path.is_file():
        raise InvalidArgument(f"{path}: no SLI catalog for dialect {dialect!r} (set {PROBES_ENV} or pass probes_dir)")
    return _load_file(path, dialect, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _load_file(path: Path, dialect: str, _mtime_ns: int, _size: int) -> Catalog:
    """One parse per version of the file: every probe of a run loads the catalog (issue 23: 0.3 s each on a
    busy host with the pure-Python YAML parser)."""
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InvalidArgument(f"{path}: unreadable SLI catalog ({' '.join(str(exc).split())})") from None
    return parse_catalog(doc, path, dialect)


def parse_catalog(doc: Any, path: Path, dialect: str) -> Catalog:
    """Validate a parsed catalog document; ``path`` names it in error messages."""
    top = _mapping(doc, str(path), {"dialect", "exercised", "description", "latency_buckets_ms", "params", "slis"})
    if top.get("dialect") != dialect:
        raise InvalidArgument(f"{path}: 'dialect' must be {dialect!r}, got {top.get('dialect')!r}")
    if not isinstance(top.get("exercised"), bool):
        raise InvalidArgument(f"{path}: 'exercised' must be true or false")
    params = {k: _param(k, v, f"{path}: param {k!r}")
              for k, v in _mapping(top.get("params"), f"{path}: params").items()}
    slis = {k: _sli(k, v, params, f"{path}: SLI {k!r}")
            for k, v in _mapping(top.get("slis"), f"{path}: slis").items()}
    buckets = top.get("latency_buckets_ms", [])
    if not isinstance(buckets, list) or not all(
            isinstance(b, int | float) and not isinstance(b, bool) and b > 0 for b in buckets):
        raise InvalidArgument(f"{path}: 'latency_buckets_ms' must be a list of positive numbers")
    return Catalog(dialect, top["exercised"], _text(top, "description", str(path)), params, slis, path,
                   tuple(float(b) for b in sorted(buckets)))


def _param(key: str, raw: Any, where: str) -> Param:
    spec = _mapping(raw, where, {"kind", "description", "default", "format", "choices", "aliases"})
    kind, fmt = spec.get("kind"), spec.get("format", "{}")
    if kind not in KINDS:
        raise InvalidArgument(f"{where}: 'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
    if not isinstance(fmt, str) or fmt.count("{}") != 1 or fmt.replace("{}", "").strip("_-"):
        raise InvalidArgument(f"{where}: 'format' must be '{{}}' with at most '_' or '-' around it")
    choices: tuple[tuple[str, str], ...] = ()
    if kind == "choice":
        raw_choices = _mapping(spec.get("choices"), f"{where}: choices")
        choices = tuple((str(k), str(v)) for k, v in raw_choices.items())
        if not all(IDENT_RE.fullmatch(v.lower()) for _, v in choices):
            raise InvalidArgument(f"{where}: 'choices' must map values to identifiers")
    aliases = tuple((str(k), str(v)) for k, v in _mapping(spec["aliases"], f"{where}: aliases").items()) \
        if "aliases" in spec else ()
    if aliases and (kind != "name" or not all(NAME_RE.fullmatch(k) and NAME_RE.fullmatch(v) for k, v in aliases)):
        raise InvalidArgument(f"{where}: 'aliases' (kind name only) must map names to names")
    default = None if spec.get("default") is None else str(spec["default"])
    param = Param(key, kind, _text(spec, "description", where), default, fmt, choices, aliases)
    if param.default is not None:
        check_value(param, param.default, f"{where}: default")
    return param


def _sli(key: str, raw: Any, params: dict[str, Param], where: str) -> SLI:
    spec = _mapping(raw, where, {"description", "unit", "params", "query", "when_absent"})
    names = spec.get("params")
    if not isinstance(names, list) or not all(isinstance(n, str) and n in params for n in names) \
            or len(set(names)) != len(names):
        raise InvalidArgument(f"{where}: 'params' must list distinct parameters declared under the top 'params'")
    query = _text(spec, "query", where)
    try:
        fields = [(f, s, c) for _, f, s, c in string.Formatter().parse(query) if f is not None]
    except ValueError as exc:
        raise InvalidArgument(f"{where}: bad query template ({exc}; literal braces must be doubled)") from None
    for field, fmt_spec, conversion in fields:
        if fmt_spec or conversion or not IDENT_RE.fullmatch(field):
            raise InvalidArgument(f"{where}: placeholder {{{field}}} must be a plain {{name}}")
    derived = {f"{n}_seconds": n for n in names if params[n].kind == "duration"}
    used = {derived.get(f, f) for f, _, _ in fields}
    if used != set(names):
        raise InvalidArgument(f"{where}: query placeholders {sorted(used)} do not match params {sorted(names)}")
    when_absent = _text(spec, "when_absent", where) if "when_absent" in spec else ""
    return SLI(key, _text(spec, "description", where), _text(spec, "unit", where), tuple(names), query, when_absent)


def check_value(param: Param, value: Any, where: str) -> str:
    """The text that ``value`` puts into a query, or InvalidArgument naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidArgument(f"{where}: {value!r} is not a {param.kind}")
    text = value if isinstance(value, str) else repr(value)
    if param.kind == "name":
        if not (text == "" == param.default or (isinstance(value, str) and NAME_RE.fullmatch(text))):
            raise InvalidArgument(f"{where}: {value!r} is not a DNS-1123 name (lowercase letters, digits, '-')")
        text = dict(param.aliases).get(text, text)
    elif param.kind == "duration":
        if not DURATION_RE.fullmatch(text) or seconds(text) <= 0:
            raise InvalidArgument(f"{where}: {value!r} is not a Prometheus duration such as 10s or 1m")
    elif param.kind == "quantile":
        if not QUANTILE_RE.fullmatch(text) or not 0 < float(text) < 1:
            raise InvalidArgument(f"{where}: {value!r} is not a quantile strictly between 0 and 1")
        text = repr(float(text))
    else:
        mapping = dict(param.choices)
        if text not in mapping:
            raise InvalidArgument(f"{where}: {value!r} is not one of {', '.join(mapping)}")
        text = mapping[text]
    return param.format.format(text) if text else ""


def _mapping(value: Any, where: str, allowed: set[str] | None = None) -> dict[Any, Any]:
    if not isinstance(value, dict) or (allowed is None and not value):
        raise InvalidArgument(f"{where}: expected a {'non-empty ' if allowed is None else ''}mapping")
    for key in value:
        if allowed is not None and key not in allowed:
            raise InvalidArgument(f"{where}: unknown field {key!r} (allowed: {', '.join(sorted(allowed))})")
        if allowed is None and not (isinstance(key, str) and IDENT_RE.fullmatch(key)):
            raise InvalidArgument(f"{where}: {key!r} is not a valid name (lowercase letters, digits, '_')")
    return value


def _text(spec: dict[Any, Any], key: str, where: str) -> str:
    value = spec.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"{where}: {key!r} must be a non-empty string")
    return value.strip()
