"""Scalar values of the mesh definition, checked as Kubernetes, Istio and Envoy check them.

``schema`` builds its field types from these (durations, HTTP paths and tokens, Kubernetes
labels, RE2 regexes, retry policies, integer ranges); ``build`` uses ``parse_duration``.
Each check raises ``ValueError`` with a one-line reason that pydantic reports under the field's path.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated

import re2
from pydantic import AfterValidator, Field

from chaosmesh_qa.errors import collapsed

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
INT32_MAX = 2**31 - 1  # Istio's int32 fields (Kubernetes rejects larger numbers)
UINT32_MAX = 2**32 - 1  # Istio's UInt32Value fields, and Envoy's counters
# Envoy's longest duration (measured: 9223372035.999999999s is taken, 9223372036s is not: int64
# nanoseconds); Istio's own bound is Go's time.Duration, the same int64 nanoseconds.
MAX_DURATION_MS = 9_223_372_035_999
ENVOY_MAX_REGEX_PROGRAM = 100  # Envoy rejects a RE2 program larger than this (its default error level)
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)", re.ASCII)
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
# RFC 3986 path characters (unreserved, sub-delims, ':', '@', '%' escapes) plus '/' and a query
HTTP_PATH = r"^/[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*$"
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", re.ASCII)  # RFC 7230 token: header names, methods
_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]", re.ASCII)
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", re.ASCII)
_NAMESPACE = re.compile(r"\*|\*?[a-z0-9-]{1,63}|[a-z0-9-]{1,63}\*", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Envoy's x-envoy-retry-on and x-envoy-retry-grpc-on policies; a status code is allowed too (as in Istio)
RETRY_ON_POLICIES = frozenset({
    "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "envoy-ratelimited",
    "retriable-4xx", "refused-stream", "retriable-status-codes", "retriable-headers",
    "http3-post-connect-failure",
    "cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
})


def parse_duration_ms(value: str) -> int:
    """Parse an Istio duration (``250ms``, ``1s``, ``1.5m``) into whole milliseconds, as Istio checks it.

    ASCII digits only; at least 1 ms and a whole number of milliseconds (Istio's rule), at most
    what Envoy takes.
    """
    match = _DURATION.fullmatch(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"malformed duration {show(value)} (expected e.g. '250ms', '1s', '2m')")
    if len(match.group(1)) > 40:
        raise ValueError(f"duration {show(value)} is too long (at most {MAX_DURATION_MS} ms)")
    ms = Decimal(match.group(1)) * _UNIT_MS[match.group(2)]
    if ms < 1:
        raise ValueError(f"duration {show(value)} is shorter than 1ms (Istio's minimum)")
    if ms != ms.to_integral_value():
        raise ValueError(f"duration {show(value)} is not a whole number of milliseconds (as Istio requires)")
    if ms > MAX_DURATION_MS:
        raise ValueError(f"duration {show(value)} is longer than Envoy's maximum ({MAX_DURATION_MS} ms)")
    return int(ms)


def parse_duration(value: str) -> float:
    """An Istio duration in seconds (whole milliseconds, so exact for ``common.duration`` to render)."""
    return parse_duration_ms(value) / 1000


def show(value: object) -> str:
    """A user's value, quoted, on one line and of bounded length."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _duration(value: str) -> str:
    parse_duration_ms(value)
    return value


def _no_control(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError(f"{show(value)} contains a control character")
    return value


def _token(value: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise ValueError(f"{show(value)} is not a valid HTTP token (RFC 7230: letters, digits and "
                         "!#$%&'*+-.^_`|~, no spaces or colons)")
    return value


def envoy_regex(value: str) -> str:
    """A regex as Envoy compiles it: RE2 syntax, within Envoy's default program size."""
    options = re2.Options()
    options.log_errors = False
    try:
        program = re2.compile(value, options).programsize
    except re2.error as exc:
        raise ValueError(f"invalid regex {show(value)} (RE2 syntax, as Envoy uses): "
                         f"{collapsed(exc.args[0] if exc.args else str(exc))}") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid regex {show(value)}: {collapsed(exc.args[0] if exc.args else str(exc))}") from None
    if program > ENVOY_MAX_REGEX_PROGRAM:
        raise ValueError(f"regex {show(value)} is too complex for Envoy (RE2 program size {program} > "
                         f"{ENVOY_MAX_REGEX_PROGRAM})")
    return value


def _labels(labels: dict[str, str]) -> dict[str, str]:
    """Kubernetes label syntax: ``[prefix/]name`` keys, values of at most 63 characters."""
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if ("/" in key and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix))) \
                or len(name) > 63 or not _LABEL_NAME.fullmatch(name):
            raise ValueError(f"label key {show(key)} is not a valid Kubernetes label name")
        if len(value) > 63 or (value and not _LABEL_NAME.fullmatch(value)):
            raise ValueError(f"label {show(key)}: value {show(value)} is not a valid Kubernetes label value")
    return labels


def retry_policies(value: str) -> str:
    for policy in value.split(","):
        if policy not in RETRY_ON_POLICIES and not _status_code(policy):
            raise ValueError(f"{show(policy)} is not a valid retryOn policy (Envoy's retry-on and "
                             "grpc retry-on policies, or an HTTP status code 100-599)")
    return value


def _status_code(policy: str) -> bool:
    return len(policy) == 3 and policy.isascii() and policy.isdigit() and 100 <= int(policy) <= 599


def is_http_path(value: str) -> bool:
    return re.fullmatch(HTTP_PATH, value) is not None


def _http_path(value: str) -> str:
    if not is_http_path(value):
        raise ValueError(f"{show(value)} is not an HTTP path (it starts with '/'; no spaces or control "
                         "characters; other characters percent-encoded)")
    return value


def _namespace(value: str) -> str:
    if not _NAMESPACE.fullmatch(value):
        raise ValueError(f"{show(value)} is not a namespace match (a namespace name, '*', or a name with "
                         "one '*' at its start or end)")
    return value


def _egress_host(value: str) -> str:
    """A Sidecar ``egress.hosts`` entry, as Istio checks it: ``namespace/dnsName``.

    The namespace is a name, ``*`` (any), ``.`` (the Sidecar's own) or ``~`` (none); the DNS
    name is ``*``, ``*.suffix`` or a lower-case DNS name (matched against a service's FQDN).
    """
    namespace, slash, host = value.partition("/")
    if not slash:
        raise ValueError(f"{show(value)} is not of the form 'namespace/dnsName' (e.g. './catalog.default.svc."
                         "cluster.local', 'istio-system/*', '*/*')")
    if namespace not in ("*", ".", "~") and not re.fullmatch(DNS_LABEL, namespace):
        raise ValueError(f"{show(value)}: namespace {show(namespace)} is not a namespace name, '*', '.' or '~'")
    name = host[2:] if host.startswith("*.") else host
    if host != "*" and (len(host) > 253 or not _DNS_SUBDOMAIN.fullmatch(name)):
        raise ValueError(f"{show(value)}: {show(host)} is not '*', '*.<suffix>' or a lower-case DNS name")
    return value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError(f"{show(value)} contains a NUL character")
    return value


def _percent(value: float) -> float:
    if 0 < value < 0.0001:
        raise ValueError("a percentage must be 0 or between 0.0001 and 100 (as Istio requires)")
    return value


Duration = Annotated[str, AfterValidator(_duration)]
Name = Annotated[str, Field(pattern=DNS_LABEL)]
Percent = Annotated[float, Field(ge=0, le=100), AfterValidator(_percent)]
Int32 = Annotated[int, Field(ge=0, le=INT32_MAX)]
PositiveInt32 = Annotated[int, Field(ge=1, le=INT32_MAX)]
UInt32 = Annotated[int, Field(ge=0, le=UINT32_MAX)]
HttpPath = Annotated[str, Field(max_length=4096), AfterValidator(_http_path)]
HeaderName = Annotated[str, AfterValidator(_token)]
Text = Annotated[str, AfterValidator(_no_control)]
LabelMap = Annotated[dict[str, str], AfterValidator(_labels)]
Namespace = Annotated[str, AfterValidator(_namespace)]
NoNul = Annotated[str, AfterValidator(_no_nul)]
EgressHost = Annotated[str, AfterValidator(_egress_host)]


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)


def join_path(path: str, key: object) -> str:
    """``path.key`` for a map key (quoted when it is not a plain word); never a list index."""
    text = str(key)
    part = text if _PLAIN_KEY.fullmatch(text) and not text.isdigit() else _quoted(text)
    if part.startswith("["):
        return f"{path}{part}"
    return f"{path}.{part}" if path else part


def _quoted(key: str) -> str:
    shown = key if len(key) <= 60 else key[:57] + "..."
    return "[" + repr(shown) + "]"
