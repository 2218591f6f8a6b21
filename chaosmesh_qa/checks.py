"""Argument checks with one wording: numbers, whole numbers, durations, names, choices, text, hosts.

Used by the actions (``chaosmesh_qa.actions``), the probes (``chaosmesh_qa.probes.*``), the traffic
profile and traffic actions (``chaosmesh_qa.traffic``), the targets' configuration and the CLI.
Every check runs before anything contacts a target, and every failure is one ``InvalidArgument``
line worded ``<argument>: expected <what>, got <value>``.  Checks are strict, the way Kubernetes
reads its API: a number is an ``int`` or ``float`` (never a bool or a string), finite, and within
its range; a whole number is an ``int``; a name is a DNS-1123 label.  Huge integers, NaN and
infinities are refused here, so no caller ever meets an ``OverflowError`` or loops on NaN.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import reprlib
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn
from urllib.parse import urlsplit

from chaosmesh_qa.errors import InvalidArgument, one_line

MAX_SECONDS = 7 * 86_400.0  # the longest duration or window any argument may name (a week)
NAME_RULE = "a name (DNS-1123 label: at most 63 lowercase letters, digits or '-', alphanumeric at both ends)"
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_HOST_LABEL = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?")
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_FIELD_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SHOW = reprlib.Repr(maxlevel=2, maxstring=60, maxother=60, maxlist=4, maxtuple=4, maxdict=4, maxset=4)


def fail(argument: str, what: str, value: Any) -> NoReturn:
    """Raise the one wording every check uses."""
    raise InvalidArgument(f"{argument}: expected {what}, got {show(value)}")


def show(value: Any) -> str:
    """A short one-line ``repr`` of any value (bounded for long strings, deep nesting and huge integers)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    try:
        text = _SHOW.repr(value)
    except Exception:  # a value whose repr itself fails: name its type
        text = f"<{type(value).__name__}>"
    return one_line(text)


def field(parent: str, key: Any) -> str:
    """``parent.key`` for a plain key, ``parent[<repr>]`` for anything else (so a message stays one line)."""
    return f"{parent}.{key}" if isinstance(key, str) and _FIELD_KEY.fullmatch(key) else f"{parent}[{show(key)}]"


# --------------------------------------------------------------------------- numbers


def is_number(value: Any) -> bool:
    """An ``int`` or a finite ``float`` (bools are not numbers)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _bound(value: float) -> str:
    return f"{int(value)}" if float(value).is_integer() else f"{value:g}"


def _range_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{_bound(low)}, {_bound(high)}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {_bound(low)}"
    if high is not None:
        return f"{'<' if high_open else '<='} {_bound(high)}"
    return ""


def number(argument: str, value: Any, low: float | None = None, high: float | None = None, *,
           low_open: bool = False, high_open: bool = False) -> float:
    """A finite number within ``[low, high]`` (ends excluded with ``low_open``/``high_open``)."""
    what = " ".join(filter(None, ("a number", _range_text(low, high, low_open, high_open))))
    if not is_number(value):
        fail(argument, what, value)
    # compare before converting: a huge int compares exactly, float() of it would overflow
    if low is not None and (value <= low if low_open else value < low):
        fail(argument, what, value)
    if high is not None and (value >= high if high_open else value > high):
        fail(argument, what, value)
    return float(value)


def positive(argument: str, value: Any, high: float | None = None) -> float:
    """A finite number > 0 (and at most ``high``)."""
    return number(argument, value, 0, high, low_open=True)


def non_negative(argument: str, value: Any, high: float | None = None) -> float:
    """A finite number >= 0 (and at most ``high``)."""
    return number(argument, value, 0, high)


def whole(argument: str, value: Any, low: int, high: int) -> int:
    """An ``int`` (not a bool, not a float) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        fail(argument, f"a whole number in [{low}, {high}]", value)
    return int(value)


def seconds(argument: str, value: Any, high: float = MAX_SECONDS) -> float:
    """A duration or window in seconds: a finite number > 0, at most ``high`` (a week by default)."""
    return number(argument, value, 0, high, low_open=True)


def flag(argument: str, value: Any) -> bool:
    if not isinstance(value, bool):
        fail(argument, "true or false", value)
    return value


# --------------------------------------------------------------------------- names and text


def name(argument: str, value: Any) -> str:
    """A DNS-1123 label, as Kubernetes names services, versions (subsets) and namespaces."""
    if not isinstance(value, str) or not _DNS_LABEL.fullmatch(value):
        fail(argument, NAME_RULE, value)
    return value


def service_or_host(argument: str, value: Any) -> str:
    """A service's name (a DNS-1123 label) or a host name of labels joined by dots (a ServiceEntry's host)."""
    if not isinstance(value, str) or len(value) > 253 or not all(_DNS_LABEL.fullmatch(part)
                                                                 for part in value.split(".")):
        fail(argument, NAME_RULE + ", or a host name of such labels joined by dots", value)
    return value


def optional_name(argument: str, value: Any) -> str | None:
    return None if value is None else name(argument, value)


def identifier(argument: str, value: Any, what: str = "an id") -> str:
    """An opaque id such as a fault id: 1 to 128 letters, digits, '.', '_' or '-'."""
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        fail(argument, f"{what} (at most 128 letters, digits, '.', '_' or '-')", value)
    return value


def choice(argument: str, value: Any, choices: Iterable[str]) -> str:
    options = tuple(choices)
    if not isinstance(value, str) or value not in options:
        fail(argument, f"one of {', '.join(options)}", value)
    return value


def text(argument: str, value: Any, max_length: int = 256) -> str:
    """A non-empty single-line string of printable characters (no control characters), trimmed."""
    what = f"a non-empty single-line text of at most {max_length} characters"
    if not isinstance(value, str) or len(value) > max_length or not value.strip() or not value.isprintable():
        fail(argument, what, value)
    return value.strip()


def mapping(argument: str, value: Any, what: str = "a mapping") -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        fail(argument, what, value)
    return value


def file_path(argument: str, value: Any) -> str:
    """A path string (or ``os.PathLike``) the OS can take: non-empty, no NUL byte, within PATH_MAX / NAME_MAX."""
    what = "a file system path (no NUL byte, at most 4095 bytes, each component at most 255)"
    raw = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(raw, str):
        fail(argument, what, value)
    try:
        encoded = os.fsencode(raw)
    except UnicodeEncodeError:
        fail(argument, what, value)
    if not encoded or b"\0" in encoded or len(encoded) >= 4096 or any(len(p) > 255 for p in encoded.split(b"/")):
        fail(argument, what, value)
    return raw


# --------------------------------------------------------------------------- hosts and URLs


def host(argument: str, value: Any) -> str:
    """An IP address or a DNS host name (RFC 1123), as a listener may bind or a client may connect to."""
    what = "an IP address or a host name"
    if not isinstance(value, str) or not value or len(value) > 253:
        fail(argument, what, value)
    if _is_ip(value) or all(_HOST_LABEL.fullmatch(label) for label in value.removesuffix(".").split(".")):
        return value
    fail(argument, what, value)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def base_url(argument: str, value: Any) -> str:
    """An ``http(s)://host[:port]`` URL without user, path, query or fragment, returned without a trailing slash."""
    what = "an http:// or https:// base URL such as 'http://127.0.0.1:8080'"
    if not isinstance(value, str) or not value.isprintable() or any(c.isspace() for c in value) or len(value) > 300:
        fail(argument, what, value)
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:  # a malformed IPv6 literal or port
        fail(argument, what, value)
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        fail(argument, what, value)
    if parts.path not in ("", "/") or parts.query or parts.fragment or "?" in value or "#" in value:
        fail(argument, f"{what}, without path or query (put paths under traffic.paths)", value)
    if port == 0 or (parts.netloc.endswith(":") and port is None):
        fail(argument, f"{what}, with a port in [1, 65535]", value)
    hostname = parts.hostname
    if not (_is_ip(hostname) or all(_HOST_LABEL.fullmatch(label) for label in hostname.removesuffix(".").split("."))):
        fail(argument, what, value)
    return value.rstrip("/")
