"""Property-based fuzzing of the mesh loader: mutations of the default mesh, then Envoy as the judge.

Every generated mesh must either be rejected with ``InvalidMeshConfig`` whose message and problems
are each one line, or be accepted; every distinct accepted mesh is then rendered by the real control
plane and its configuration must pass ``envoy --mode validate`` (batched, see ``envoy_validation``).

Three generators, 1,250 inputs per run in all, derandomized (the same inputs on every run, so CI is
reproducible) and bounded by a per-input deadline:

* structural: one value of a parsed document replaced by an odd value (wrong type, out-of-range or
  huge number, NaN, odd or unicode string, bad duration, bad path or header name), a key removed
  or added, a value wrapped or nested;
* targeted: a known field (durations, counters, paths, header names, retryOn, labels) given a
  value from a generator aimed at that field's rules, so that many are accepted and reach Envoy;
* textual: the YAML text itself changed (a line repeated, making duplicate keys; anchors and
  aliases, alias bombs, deep nesting, control characters, truncation, invalid UTF-8).
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaosmesh_qa.errors import InvalidMeshConfig
from chaosmesh_qa.mesh import MeshModel, load_mesh
from chaosmesh_qa.targets.local.envoy_validation import EnvoyJudge
from chaosmesh_qa.targets.local.sandbox import default_mesh_dir

FILES = ("mesh.yaml", "security.yaml", "traffic.yaml")
TEXTS = {name: (default_mesh_dir() / name).read_text(encoding="utf-8") for name in FILES}
DOCS = {name: list(yaml.safe_load_all(text)) for name, text in TEXTS.items()}
QUOTA = {"structural": 550, "targeted": 350, "textual": 350}  # 1,250 inputs per run


def _settings(examples: int) -> settings:
    return settings(max_examples=examples, derandomize=True, database=None, deadline=timedelta(seconds=10),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much], print_blob=True)


# --------------------------------------------------------------------------- value generators

ODD_STRINGS = [
    "", " ", "8080", "80", "2.0", "yes", "on", "off", "true", "null", "~", "0x10", "1e3", "-1", "+1",
    "\u0661s", "\uff11s", "1s ", " 1s", "0s", "0ms", "0.5ms", "1.5ms", "1.0001s", "1e3s", "-1s", "infs", "nans",
    "1us", "1ns", "1d", "1m30s", "9223372036s", "9223372035s", "315576000001s", "2562047h", "2562048h",
    "/", "/a b", "/a\tb", "/a\x01b", "/ü", "a", "/a?b=c", "//", "/%zz", "*", "**", "/a*",
    "x-canary", "X-Canary", "x canary", "x:canary", ":path", "x\x7fy", "(", "a{200}", "(?=x)", ".*",
    "ROUND_ROBIN", "STRICT", "ISTIO_MUTUAL", "DISABLE", "ALLOW", "DENY", "v1", "v2", "catalog",
    "5xx", "503", "599", "600", "099", "5xx,reset", "5xx, reset", "5xx,,reset", "bogus", "retriable-status-codes",
    "a" * 300, "\u2028", "line\nbreak", "tab\there", "\U0001f600", "é", "ǅ",
]
NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2, 3, 20, 21, 99, 100, 101, 199, 200, 599, 600, 65535, 65536, 2**31 - 1,
                     2**31, 2**32 - 1, 2**32, 2**63, 2**64]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 0.5, 2.0, 1e-5, 1e-4, 99.9999, 100.0, 100.0001, 1e308]),
)
UNICODE_DIGITS = ["\u0661", "\u0661\u0662", "\uff10", "1_0"]  # Arabic-Indic and full-width digits
DIGITS = st.from_regex(r"[0-9]{1,14}(\.[0-9]{1,5})?", fullmatch=True) | st.sampled_from(UNICODE_DIGITS)
DURATIONS = st.builds(lambda n, u: f"{n}{u}", DIGITS, st.sampled_from(["ms", "s", "m", "h", "us", "", "S", " s"]))
SAFE_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
PATHS = st.builds(lambda parts: "/" + "/".join(parts),
                  st.lists(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=6), max_size=3))
TOKENS = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), min_size=0, max_size=10)
SCALARS = st.one_of(NUMBERS, st.booleans(), st.none(), st.sampled_from(ODD_STRINGS), SAFE_TEXT, DURATIONS,
                    PATHS)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(SAFE_TEXT, inner, max_size=3), max_leaves=5)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


NODES = [(name, i, path) for name in FILES for i, doc in enumerate(DOCS[name]) for path in _paths(doc)]


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    _get(doc, path[:-1])[path[-1]] = value
    return doc


_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _dump(docs: dict[str, list[Any]], changed: str) -> dict[str, str]:
    """The changed file dumped again (libyaml), the others as shipped."""
    text = yaml.dump_all(docs[changed], Dumper=_DUMPER, allow_unicode=True, sort_keys=False)
    return {**TEXTS, changed: text}


@st.composite
def structural(draw: st.DrawFn) -> dict[str, str]:
    name, index, path = draw(st.sampled_from(NODES))
    docs = {name: copy.deepcopy(DOCS[name])}
    target = _get(docs[name][index], path)
    operation = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add", "wrap", "nest"]))
    if operation == "delete" and path:
        del _get(docs[name][index], path[:-1])[path[-1]]
    elif operation == "add" and isinstance(target, dict):
        target[draw(SAFE_TEXT | st.sampled_from(["kind", "name", "spec", "x-canary", "weight"]))] = draw(VALUES)
    elif operation == "add" and isinstance(target, list):
        target.insert(draw(st.integers(0, len(target))), draw(VALUES if not target else st.just(target[0]) | VALUES))
    elif operation == "wrap":
        docs[name][index] = _set(docs[name][index], path, [target] if draw(st.booleans()) else {"x": target})
    elif operation == "nest":
        value: Any = target
        for _ in range(draw(st.integers(1, 80))):
            value = [value]
        docs[name][index] = _set(docs[name][index], path, value)
    else:
        docs[name][index] = _set(docs[name][index], path, draw(VALUES))
    return _dump(docs, name)


PERCENTAGE = st.fixed_dictionaries({"value": NUMBERS})
FAULTS = (st.fixed_dictionaries({"delay": st.fixed_dictionaries({"fixedDelay": DURATIONS, "percentage": PERCENTAGE})})
          | st.fixed_dictionaries({"abort": st.fixed_dictionaries({"httpStatus": NUMBERS, "percentage": PERCENTAGE})}))

# field (file, document index, path) -> values aimed at its rules
TARGETED: list[tuple[str, int, tuple[Any, ...], st.SearchStrategy[Any]]] = [
    ("traffic.yaml", 4, ("spec", "http", 0, "timeout"), DURATIONS),
    ("traffic.yaml", 2, ("spec", "http", 0, "retries", "perTryTimeout"), DURATIONS),
    ("traffic.yaml", 2, ("spec", "http", 0, "retries", "retryOn"),
     st.lists(st.sampled_from(["5xx", "reset", "connect-failure", "503", "404", "retriable-4xx", "unavailable",
                               "cancelled", "bogus", "600", "", " 5xx", "reset-before-request"]),
              min_size=1, max_size=4).map(",".join)),
    ("traffic.yaml", 2, ("spec", "http", 0, "retries", "attempts"), NUMBERS | st.sampled_from(["3", True])),
    ("traffic.yaml", 3, ("spec", "trafficPolicy", "connectionPool", "tcp", "connectTimeout"), DURATIONS),
    ("traffic.yaml", 3, ("spec", "trafficPolicy", "outlierDetection", "interval"), DURATIONS),
    ("traffic.yaml", 3, ("spec", "trafficPolicy", "outlierDetection", "baseEjectionTime"), DURATIONS),
    ("traffic.yaml", 3, ("spec", "trafficPolicy", "outlierDetection", "consecutive5xxErrors"), NUMBERS),
    ("traffic.yaml", 3, ("spec", "trafficPolicy", "outlierDetection", "maxEjectionPercent"), NUMBERS),
    ("traffic.yaml", 5, ("spec", "trafficPolicy", "connectionPool", "tcp", "maxConnections"), NUMBERS),
    ("traffic.yaml", 5, ("spec", "trafficPolicy", "connectionPool", "http", "http1MaxPendingRequests"), NUMBERS),
    ("traffic.yaml", 5, ("spec", "trafficPolicy", "connectionPool", "http", "http2MaxRequests"), NUMBERS),
    ("traffic.yaml", 5, ("spec", "trafficPolicy", "connectionPool", "http", "maxRetries"), NUMBERS),
    ("traffic.yaml", 5, ("spec", "trafficPolicy", "connectionPool", "http", "maxRequestsPerConnection"), NUMBERS),
    ("traffic.yaml", 0, ("spec", "http", 0, "match", 0, "headers"),
     st.dictionaries(TOKENS, st.fixed_dictionaries({"exact": SAFE_TEXT}) | st.fixed_dictionaries(
         {"prefix": SAFE_TEXT}) | st.fixed_dictionaries({"regex": SAFE_TEXT}), min_size=1, max_size=2)),
    ("traffic.yaml", 0, ("spec", "http", 0, "match", 0, "uri"),
     st.fixed_dictionaries({"prefix": PATHS}) | st.fixed_dictionaries({"exact": PATHS | SAFE_TEXT})),
    ("traffic.yaml", 0, ("spec", "http", 1, "route", 0, "weight"), NUMBERS),
    ("traffic.yaml", 4, ("spec", "http", 0, "fault"), FAULTS),
    ("traffic.yaml", 1, ("spec", "subsets", 0, "labels"), st.dictionaries(TOKENS, TOKENS, min_size=1, max_size=2)),
    ("mesh.yaml", 0, ("spec", "services", 1, "app", "calls", 0, "path"), PATHS),
    ("mesh.yaml", 0, ("spec", "services", 0, "app", "propagateHeaders"), st.lists(TOKENS, max_size=2)),
    ("mesh.yaml", 0, ("spec", "ingress", "paths"), st.lists(PATHS, min_size=1, max_size=2)),
    ("mesh.yaml", 0, ("spec", "services", 3, "versions", 1, "labels"),
     st.dictionaries(st.sampled_from(["app", "version", "track", "a/b", "x.io/y", "_x"]), TOKENS, max_size=2)),
    ("mesh.yaml", 0, ("spec", "services", 2, "port"), NUMBERS | st.sampled_from(["8080"])),
    ("mesh.yaml", 0, ("spec", "services", 0, "app", "parallel"), st.booleans() | st.sampled_from(["on", 1, None])),
    ("security.yaml", 1, ("spec", "rules", 0, "from", 0, "source"),
     st.fixed_dictionaries({"namespaces": st.lists(TOKENS, min_size=1, max_size=2)})
     | st.fixed_dictionaries({"principals": st.lists(SAFE_TEXT, min_size=1, max_size=2)})),
    ("security.yaml", 1, ("spec", "rules", 0, "to"),
     st.lists(st.fixed_dictionaries({"operation": st.fixed_dictionaries(
         {"paths": st.lists(PATHS | st.sampled_from(["*", "/a*", "*b"]), max_size=2),
          "methods": st.lists(TOKENS, max_size=2)})}), max_size=2)),
]


@st.composite
def targeted(draw: st.DrawFn) -> dict[str, str]:
    name, index, path, values = draw(st.sampled_from(TARGETED))
    docs = {name: copy.deepcopy(DOCS[name])}
    parent = _get(docs[name][index], path[:-1]) if len(path) > 1 else docs[name][index]
    if isinstance(parent, dict) and path[-1] not in parent:
        parent[path[-1]] = None
    docs[name][index] = _set(docs[name][index], path, draw(values))
    return _dump(docs, name)


BOMB = "  bomb0: &b0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
    f"  bomb{i}: &b{i} [{', '.join([f'*b{i - 1}'] * 10)}]\n" for i in range(1, 9))


@st.composite
def textual(draw: st.DrawFn) -> dict[str, bytes]:
    files = {name: text.encode("utf-8") for name, text in TEXTS.items()}
    name = draw(st.sampled_from(FILES))
    lines = TEXTS[name].splitlines(keepends=True)
    at = draw(st.integers(0, len(lines) - 1))
    operation = draw(st.sampled_from(["repeat", "repeat", "anchor", "bomb", "deep", "insert", "replace",
                                      "truncate", "bytes", "tab"]))
    line = lines[at]
    indent = line[:len(line) - len(line.lstrip(" "))]
    if operation == "repeat":  # a repeated line: mostly a duplicate key
        lines.insert(at, line)
    elif operation == "anchor" and ":" in line and not line.rstrip().endswith(":"):
        key, _, value = line.partition(":")
        lines[at] = f"{key}: &a{value}"
        lines.insert(draw(st.integers(at + 1, len(lines))), f"{indent}alias{draw(st.integers(0, 9))}: *a\n")
    elif operation == "bomb":
        lines.insert(at + 1, "".join(indent + b.lstrip(" ") + "" for b in BOMB.splitlines(keepends=True)))
    elif operation == "deep":
        depth = draw(st.integers(1, 600))
        lines.insert(at + 1, f"{indent}deep: {'[' * depth}{']' * depth}\n")
    elif operation == "insert":
        lines.insert(at, indent + draw(SAFE_TEXT) + "\n")
    elif operation == "replace":
        cut = draw(st.integers(0, len(line)))
        lines[at] = line[:cut] + draw(SAFE_TEXT | st.sampled_from(ODD_STRINGS)) + line[cut:]
    elif operation == "truncate":
        lines = lines[:at]
    elif operation == "tab":
        lines[at] = line.replace(" ", "\t", 1)
    data = "".join(lines).encode("utf-8")
    if operation == "bytes":
        cut = draw(st.integers(0, len(data)))
        data = data[:cut] + draw(st.binary(min_size=1, max_size=4)) + data[cut:]
    files[name] = data
    return files


# --------------------------------------------------------------------------- the property


class Verdicts:
    """Loads each generated mesh and keeps the distinct accepted models for Envoy."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="chaosmesh-qa-fuzz-"))
        self.inputs = 0
        self.rejected = 0
        self.accepted: dict[str, MeshModel] = {}

    def check(self, files: dict[str, str] | dict[str, bytes]) -> None:
        root = self.directory / "mesh"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        for name, content in files.items():
            path = root / name
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        self.inputs += 1
        try:
            model = load_mesh(root).model
        except InvalidMeshConfig as exc:
            self.rejected += 1
            message = str(exc)
            assert message and "\n" not in message and "\r" not in message, message
            assert all(len(p.splitlines()) == 1 for p in exc.problems), exc.problems
            assert message.startswith(str(root)), message
            return
        self.accepted.setdefault(repr(model), model)

    def envoy_verdict(self) -> tuple[int, list[str]]:
        """Every distinct accepted mesh, rendered and validated by Envoy in batches."""
        judge = EnvoyJudge(self.directory / "envoy")
        for i, model in enumerate(self.accepted.values()):
            judge.add(model, f"accepted mesh #{i}")
        return len(self.accepted), [str(r) for r in judge.run()]

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def verdicts() -> Iterator[Verdicts]:
    found = Verdicts()
    yield found
    found.close()


def _run(verdicts: Verdicts, strategy: st.SearchStrategy[Any], quota: int) -> None:
    @_settings(quota)
    @given(strategy)
    def property_holds(files: Any) -> None:
        verdicts.check(files)

    started = time.process_time()
    property_holds()
    loading = time.process_time() - started
    assert verdicts.inputs >= quota, f"only {verdicts.inputs} inputs generated"
    assert verdicts.rejected > 0
    accepted, rejections = verdicts.envoy_verdict()
    assert not rejections, f"{len(rejections)} accepted meshes Envoy rejects, e.g. {rejections[:3]}"
    print(f"{verdicts.inputs} inputs: {verdicts.rejected} rejected, {accepted} distinct accepted, all Envoy-valid "
          f"(CPU: {loading:.1f} s generating and loading, {time.process_time() - started - loading:.1f} s rendering)")


@pytest.mark.processes
def test_structural_mutations(verdicts: Verdicts) -> None:
    _run(verdicts, structural(), QUOTA["structural"])


@pytest.mark.processes
def test_targeted_values(verdicts: Verdicts) -> None:
    _run(verdicts, targeted(), QUOTA["targeted"])


@pytest.mark.processes
def test_textual_mutations(verdicts: Verdicts) -> None:
    _run(verdicts, textual(), QUOTA["textual"])


def test_quota_is_at_least_1200() -> None:
    assert sum(QUOTA.values()) >= 1200
