"""Regression tests for the strict mesh input: each problem found with generated bad inputs, fixed.

Each case copies the default mesh, breaks one thing, and checks that the loader answers with one
``InvalidMeshConfig`` line naming file, resource, field path and reason, quickly; the CLI cases check
exit status 2, one line on stderr, no traceback, and that ``up`` starts nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from chaosmesh_qa.errors import InvalidMeshConfig
from chaosmesh_qa.mesh import load_mesh
from chaosmesh_qa.targets.local.envoy import common
from tests.support.editing import Edit, append, mesh_with, replace

ALIAS_BOMB = "".join([
    "  bomb0: &b0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n",
    *(f"  bomb{i}: &b{i} [{', '.join([f'*b{i - 1}'] * 10)}]\n" for i in range(1, 9)),
])


def _in_spec(file: str, anchor: str, text: str) -> Edit:
    """Insert ``text`` (indented lines) after the ``anchor`` line inside a resource's spec."""
    return replace(file, anchor, anchor + text)


@dataclass(frozen=True)
class Case:
    id: str
    edit: Edit
    where: str  # "<file>[:line]: <Kind>/<name>: <field path>" fragment
    reason: str


def _symlink(name: str, target: str) -> Edit:
    return lambda root: os.symlink(target, root / name)


def _loop(root: Path) -> None:
    os.symlink("b.yaml", root / "a.yaml")
    os.symlink("a.yaml", root / "b.yaml")


CASES = [
    # input that crashed or hung the loader
    Case("kind-is-a-list", replace("security.yaml", "kind: PeerAuthentication", "kind: [PeerAuthentication]"),
         "security.yaml: document 1: kind", "expected a string, got a list"),
    Case("kind-is-a-map", replace("security.yaml", "kind: PeerAuthentication", "kind: {a: b}"),
         "security.yaml: document 1: kind", "expected a string, got a mapping"),
    Case("alias-bomb-in-spec", _in_spec("traffic.yaml", "  hosts: [inventory]\n", ALIAS_BOMB),
         "VirtualService/inventory: spec.bomb", "more than 100000 values once YAML aliases are expanded"),
    Case("recursive-alias", _in_spec("traffic.yaml", "  hosts: [inventory]\n", "  loop: &r [*r]\n"),
         "VirtualService/inventory: spec.loop[0]", "a YAML alias refers to a node containing it"),
    Case("nesting-500-deep", _in_spec("traffic.yaml", "  hosts: [inventory]\n",
                                      "  deep: " + "[" * 500 + "]" * 500 + "\n"),
         "traffic.yaml:", "nesting deeper than 64 levels"),
    Case("mapping-nesting-500-deep", _in_spec("traffic.yaml", "  hosts: [inventory]\n",
                                              "  deep: " + "{a: " * 500 + "1" + "}" * 500 + "\n"),
         "traffic.yaml:", "nesting deeper than 64 levels"),
    # loose coercion: types read as Kubernetes and Istio read them
    Case("port-as-string", replace("mesh.yaml", "  - name: inventory\n    port: 8080",
                                   '  - name: inventory\n    port: "8080"'),
         "Mesh/shop: spec.services[2].port", "valid integer"),
    Case("replicas-as-float", replace("mesh.yaml", "- {name: v1, replicas: 1}", "- {name: v1, replicas: 2.0}"),
         "Mesh/shop: spec.services[0].versions[0].replicas", "valid integer"),
    Case("attempts-yes", replace("traffic.yaml", "attempts: 3", "attempts: yes"),
         "VirtualService/catalog: spec.http[0].retries.attempts", "valid integer"),
    Case("parallel-on-string", replace("mesh.yaml", "parallel: true", 'parallel: "on"'),
         "Mesh/shop: spec.services[0].app.parallel", "valid boolean"),
    Case("weight-as-string", replace("traffic.yaml", "weight: 80", 'weight: "80"'),
         "VirtualService/reviews: spec.http[1].route[0].weight", "valid integer"),
    Case("nan-latency", replace("mesh.yaml", "app: {latencyMs: 2}", "app: {latencyMs: .nan}"),
         "spec.services[3].versions[1].app.latencyMs", "finite number"),
    # Envoy's and Istio's ranges
    Case("max-connections-beyond-int32", replace("traffic.yaml", "maxConnections: 16", "maxConnections: 4294967296"),
         "DestinationRule/inventory: spec.trafficPolicy.connectionPool.tcp.maxConnections",
         "less than or equal to 2147483647"),
    Case("timeout-zero", replace("traffic.yaml", "timeout: 1s", "timeout: 0s"),
         "VirtualService/inventory: spec.http[0].timeout", "shorter than 1ms"),
    Case("timeout-sub-millisecond", replace("traffic.yaml", "timeout: 1s", "timeout: 0.5ms"),
         "VirtualService/inventory: spec.http[0].timeout", "shorter than 1ms"),
    Case("timeout-fraction-of-millisecond", replace("traffic.yaml", "timeout: 1s", "timeout: 1.0005s"),
         "VirtualService/inventory: spec.http[0].timeout", "not a whole number of milliseconds"),
    Case("timeout-beyond-envoy", replace("traffic.yaml", "timeout: 1s", "timeout: 9223372036s"),
         "VirtualService/inventory: spec.http[0].timeout", "longer than Envoy's maximum"),
    Case("timeout-huge", replace("traffic.yaml", "timeout: 1s", "timeout: " + "9" * 400 + "h"),
         "VirtualService/inventory: spec.http[0].timeout", "too long"),
    Case("timeout-unicode-digit", replace("traffic.yaml", "timeout: 1s", 'timeout: "\u0661s"'),
         "VirtualService/inventory: spec.http[0].timeout", "malformed duration"),
    Case("connect-timeout-zero", replace("traffic.yaml", "tcp: {connectTimeout: 250ms}", "tcp: {connectTimeout: 0ms}"),
         "DestinationRule/catalog: spec.trafficPolicy.connectionPool.tcp.connectTimeout", "shorter than 1ms"),
    Case("fault-percent-below-istio-minimum",
         replace("traffic.yaml", "timeout: 1s", "timeout: 1s\n    fault: {abort: {httpStatus: 503, "
                                                "percentage: {value: 0.00001}}}"),
         "spec.http[0].fault.abort.percentage.value", "0 or between 0.0001 and 100"),
    # HTTP syntax
    Case("call-path-with-space", replace("mesh.yaml", "path: /stock}", "path: /st ock}"),
         "Mesh/shop: spec.services[1].app.calls[0].path", "is not an HTTP path"),
    Case("call-path-with-control-character", replace("mesh.yaml", "path: /stock}", 'path: "/st\\u0001ock"}'),
         "Mesh/shop: spec.services[1].app.calls[0].path", "is not an HTTP path"),
    Case("ingress-path-with-space", replace("mesh.yaml", 'paths: ["/"]', 'paths: ["/a b"]'),
         "Mesh/shop: spec.ingress.paths[0]", "is not an HTTP path"),
    Case("header-name-empty", replace("traffic.yaml", "x-canary: {exact", '"": {exact'),
         "VirtualService/reviews: spec.http[0].match[0].headers[''] (key)", "not a valid HTTP token"),
    Case("header-name-with-space", replace("traffic.yaml", "x-canary: {exact", '"x canary": {exact'),
         "spec.http[0].match[0].headers['x canary'] (key)", "not a valid HTTP token"),
    Case("header-name-with-colon", replace("traffic.yaml", "x-canary: {exact", '"x:canary": {exact'),
         "spec.http[0].match[0].headers['x:canary'] (key)", "not a valid HTTP token"),
    Case("propagated-header-with-space", replace("mesh.yaml", "propagateHeaders: [x-canary]",
                                                 "propagateHeaders: ['x canary']"),
         "Mesh/shop: spec.services[0].app.propagateHeaders[0]", "not a valid HTTP token"),
    Case("unknown-retry-on", replace("traffic.yaml", "retryOn: connect-failure", "retryOn: bogus,connect-failure"),
         "VirtualService/catalog: spec.http[0].retries.retryOn", "'bogus' is not a valid retryOn policy"),
    Case("regex-envoy-cannot-compile", replace("traffic.yaml", 'x-canary: {exact: "true"}',
                                               "x-canary: {regex: '(?=t)rue'}"),
         "spec.http[0].match[0].headers.x-canary.regex", "RE2 syntax"),
    Case("regex-too-large-for-envoy", replace("traffic.yaml", 'x-canary: {exact: "true"}',
                                              "x-canary: {regex: 'a{200}'}"),
         "spec.http[0].match[0].headers.x-canary.regex", "too complex for Envoy"),
    Case("authz-namespace-not-a-name", replace("security.yaml", "principals: [cluster.local/ns/default/sa/catalog]",
                                               "namespaces: ['(']"),
         "AuthorizationPolicy/inventory-callers: spec.rules[0].from[0].source.namespaces[0]",
         "not a namespace match"),
    # labels
    Case("labels-redefine-app", replace("mesh.yaml", "- {name: v1, replicas: 1}",
                                        "- {name: v1, replicas: 1, labels: {app: other}}"),
         "Mesh/shop: spec.services[0].versions[0]", "'app' cannot be redefined"),
    Case("labels-redefine-version", replace("mesh.yaml", "- {name: v1, replicas: 1}",
                                            "- {name: v1, replicas: 1, labels: {version: v9}}"),
         "Mesh/shop: spec.services[0].versions[0]", "'version' cannot be redefined"),
    Case("label-key-not-kubernetes", replace("traffic.yaml", "labels: {version: v1}", "labels: {'bad key': v1}"),
         "DestinationRule/reviews: spec.subsets[0].labels", "not a valid Kubernetes label name"),
    # duplicate keys and map keys
    Case("duplicate-kind", replace("security.yaml", "kind: PeerAuthentication\n",
                                   "kind: PeerAuthentication\nkind: AuthorizationPolicy\n"),
         "security.yaml:4: PeerAuthentication/default: kind", "duplicate key 'kind' (first at line 3"),
    Case("duplicate-nested-key", replace("traffic.yaml", "    - destination: {host: catalog}\n",
                                         "    - destination: {host: catalog, host: inventory}\n"),
         "VirtualService/catalog: spec.http[0].route[0].destination.host", "duplicate key 'host'"),
    Case("map-key-named-as-key", replace("traffic.yaml", 'x-canary: {exact: "true"}', "'123': {exact: 5}"),
         "spec.http[0].match[0].headers['123'].exact", "valid string"),
    Case("integer-map-key-is-a-string", replace("traffic.yaml", 'x-canary: {exact: "true"}', "123: {exact: 5}"),
         "spec.http[0].match[0].headers['123'].exact", "valid string"),
    Case("float-map-key", replace("traffic.yaml", 'x-canary: {exact: "true"}', "1.5: {exact: x}"),
         "VirtualService/reviews: spec.http[0].match[0].headers", "mapping key '1.5' is not a string"),
    # files
    Case("dangling-symlink", _symlink("extra.yaml", "missing.yaml"),
         "extra.yaml", "dangling symbolic link"),
    Case("symlink-loop", _loop, "a.yaml", "symbolic link loop"),
    Case("fifo-named-yaml", lambda root: os.mkfifo(root / "pipe.yaml"), "pipe.yaml", "not a regular file"),
    Case("file-too-large", append("zz.yaml", "# " + "x" * (1 << 20) + "\n"), "zz.yaml", "file too large"),
    Case("too-many-documents", append("zz.yaml", "{}\n---\n" * 1200), "zz.yaml:", "more than 1000 YAML documents"),
    Case("not-utf8", lambda root: (root / "zz.yaml").write_bytes(b"kind: \xff\n"), "zz.yaml:1", "not UTF-8"),
    Case("nul-in-command", replace("mesh.yaml", "  - name: inventory\n",
                                   '  - name: inventory\n    command: ["a\\0b"]\n'),
         "Mesh/shop: spec.services[2].command[0]", "NUL"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_naming_the_field(tmp_path: Path, case: Case) -> None:
    root = mesh_with(tmp_path, case.edit)
    started = time.monotonic()
    with pytest.raises(InvalidMeshConfig) as info:
        load_mesh(root)
    assert time.monotonic() - started < 5, "validation must stay fast"
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    assert message.startswith(str(root)), message
    assert case.where in message, message
    assert case.reason in message, message


def test_path_component_over_255_characters(tmp_path: Path) -> None:
    with pytest.raises(InvalidMeshConfig, match="cannot read mesh directory: File name too long"):
        load_mesh(tmp_path / ("m" * 300))


def test_status_codes_in_retry_on_become_envoy_retriable_status_codes(tmp_path: Path) -> None:
    root = mesh_with(tmp_path, replace("traffic.yaml", "retryOn: connect-failure", "retryOn: 503,connect-failure"))
    retries = load_mesh(root).model.routes["catalog"][0].retries
    assert retries.retriable_status_codes == (503,)
    assert retries.retry_on.split(",") == ["connect-failure", "refused-stream", "unavailable", "reset", "5xx",
                                           "retriable-status-codes"]


@pytest.mark.parametrize(("seconds", "rendered"), [
    (0.001, "0.001s"), (0.25, "0.250s"), (1.0, "1s"), (2.5, "2.500s"), (9_223_372_035.999, "9223372035.999s"),
    (0.0004, "0.001s"),  # never "0.000s" (no timeout at all for Envoy)
])
def test_durations_render_exactly_for_envoy(seconds: float, rendered: str) -> None:
    assert common.duration(seconds) == rendered


@pytest.mark.parametrize("seconds", [float("inf"), float("nan"), -1.0, 9_223_372_036.0])
def test_durations_envoy_cannot_take_are_refused(seconds: float) -> None:
    with pytest.raises(ValueError, match="cannot be given to Envoy"):
        common.duration(seconds)


# --------------------------------------------------------------------------- the CLI

CLI = Path(sys.executable).parent / "chaosmesh-qa"
CLI_CASES = ["kind-is-a-list", "alias-bomb-in-spec", "nesting-500-deep", "duplicate-kind", "dangling-symlink",
             "symlink-loop", "fifo-named-yaml", "max-connections-beyond-int32"]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAOSMESH_QA_")}
    return subprocess.run([str(CLI), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def _one_line_exit_2(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("chaosmesh-qa: "), result.stderr
    return lines[0]


@pytest.mark.processes
@pytest.mark.parametrize("case_id", CLI_CASES)
def test_validate_exits_2_with_one_line(tmp_path: Path, case_id: str) -> None:
    case = next(c for c in CASES if c.id == case_id)
    root = mesh_with(tmp_path, case.edit)
    line = _one_line_exit_2(_cli("validate", "--mesh", str(root), cwd=tmp_path))
    assert case.reason in line, line


@pytest.mark.processes
@pytest.mark.parametrize("case_id", ["alias-bomb-in-spec", "duplicate-kind"])
def test_up_starts_nothing(tmp_path: Path, case_id: str) -> None:
    case = next(c for c in CASES if c.id == case_id)
    root = mesh_with(tmp_path, case.edit)
    state = tmp_path / "state"
    line = _one_line_exit_2(_cli("up", "--mesh", str(root), "--state-dir", str(state), cwd=tmp_path))
    assert case.reason in line, line
    assert not state.exists() or list(state.iterdir()) == []


@pytest.mark.processes
def test_cli_path_component_over_255_characters(tmp_path: Path) -> None:
    line = _one_line_exit_2(_cli("validate", "--mesh", str(tmp_path / ("m" * 300)), cwd=tmp_path))
    assert "File name too long" in line or "at most 255" in line, line  # the loader's check, or the CLI's own
