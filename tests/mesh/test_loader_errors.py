"""Invalid mesh definitions: each case copies the default mesh, breaks one thing, and checks the error.

Every error must be an ``InvalidMeshConfig`` whose message is a single line naming the file,
the field path and the reason; unsupported fields must only warn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from chaosmesh_qa.errors import InvalidMeshConfig
from chaosmesh_qa.mesh import load_mesh
from chaosmesh_qa.targets.local.sandbox import default_mesh_dir
from tests.support.editing import Edit, append, copy_file, mesh_with, remove_all_yaml, replace


@dataclass(frozen=True)
class Case:
    id: str
    edit: Edit
    file: str  # file name the message must name
    field: str  # field path the message must contain ("" when the problem is the whole directory)
    reason: str  # fragment of the reason


CASES = [
    Case("unknown-kind",
         append("traffic.yaml", "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntryPolicy\n"
                                "metadata: {name: external}\nspec: {hosts: [example.com]}\n"),
         "traffic.yaml", ": kind:", "unknown kind 'ServiceEntryPolicy'"),
    Case("istio-kind-wrong-api-version",
         replace("traffic.yaml", "networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: inventory}",
                 "security.istio.io/v1\nkind: VirtualService\nmetadata: {name: inventory}"),
         "traffic.yaml", "VirtualService/inventory: apiVersion:", "is not a VirtualService API version"),
    Case("mesh-kind-wrong-api-version",
         replace("mesh.yaml", "chaosmesh-qa.io/v1alpha1", "chaosmesh-qa.io/v2"),
         "mesh.yaml", "Mesh/shop: apiVersion:", "chaosmesh-qa.io/v1alpha1"),
    Case("virtualservice-unknown-host",
         replace("traffic.yaml", "hosts: [inventory]", "hosts: [payments]"),
         "traffic.yaml", "VirtualService/inventory: spec.hosts[0]:", "unknown host 'payments'"),
    Case("route-destination-unknown-host",
         replace("traffic.yaml", "destination: {host: catalog}", "destination: {host: payments}"),
         "traffic.yaml", "spec.http[0].route[0].destination.host:", "unknown host 'payments'"),
    Case("weights-all-zero",  # weights are relative (Istio); all zero would send nothing anywhere
         replace("traffic.yaml", "weight: 80\n    - destination: {host: reviews, subset: v2}\n      weight: 20",
                 "weight: 0\n    - destination: {host: reviews, subset: v2}\n      weight: 0"),
         "traffic.yaml", "VirtualService/reviews: spec.http[1].route:", "every weight is 0"),
    Case("subset-not-in-destinationrule",
         replace("traffic.yaml", "subset: v2}\n      weight: 20", "subset: v3}\n      weight: 20"),
         "traffic.yaml", "spec.http[1].route[1].destination.subset:", "subset 'v3' is not defined"),
    Case("negative-replicas",
         replace("mesh.yaml", "{name: v1, replicas: 1}", "{name: v1, replicas: -1}"),
         "mesh.yaml", "spec.services[0].versions[0].replicas:", "greater than or equal to 0"),
    Case("malformed-duration",
         replace("traffic.yaml", "timeout: 1s", "timeout: 2 seconds"),
         "traffic.yaml", "VirtualService/inventory: spec.http[0].timeout:", "malformed duration '2 seconds'"),
    Case("malformed-retry-duration",
         replace("traffic.yaml", "perTryTimeout: 500ms", "perTryTimeout: half a second"),
         "traffic.yaml", "spec.http[0].retries.perTryTimeout:", "malformed duration"),
    Case("duplicate-service",
         append("mesh.yaml", "  - name: inventory\n    versions:\n    - {name: v1}\n"),
         "mesh.yaml", "spec.services[4].name:", "duplicate service 'inventory'"),
    Case("duplicate-version",
         replace("mesh.yaml", "- name: v2\n      replicas: 1", "- name: v1\n      replicas: 1"),
         "mesh.yaml", "spec.services[3].versions[1].name:", "duplicate version 'v1'"),
    Case("call-to-unknown-service",
         replace("mesh.yaml", "{service: inventory, path: /stock}", "{service: payments, path: /stock}"),
         "mesh.yaml", "spec.services[1].app.calls[0].service:", "unknown service 'payments'"),
    Case("version-call-to-unknown-service",
         replace("mesh.yaml", "app: {latencyMs: 2}", "app: {latencyMs: 2, calls: [{service: payments}]}"),
         "mesh.yaml", "spec.services[3].versions[1].app.calls[0].service:", "unknown service 'payments'"),
    Case("call-cycle",
         replace("mesh.yaml", "responseBytes: 64", "responseBytes: 64\n      calls: [{service: frontend}]"),
         "mesh.yaml", "Mesh/shop: spec.services:", "call cycle frontend -> catalog -> inventory -> frontend"),
    Case("ingress-unknown-service",
         replace("mesh.yaml", "service: frontend\n", "service: gateway\n"),
         "mesh.yaml", "spec.ingress.service:", "unknown service 'gateway'"),
    Case("weight-out-of-range",
         replace("traffic.yaml", "weight: 80", "weight: -1"),
         "traffic.yaml", "spec.http[1].route[0].weight:", "greater than or equal to 0"),
    Case("fault-percent-out-of-range",
         replace("traffic.yaml", "timeout: 1s",
                 "timeout: 1s\n    fault: {abort: {httpStatus: 503, percentage: {value: 120}}}"),
         "traffic.yaml", "spec.http[0].fault.abort.percentage.value:", "less than or equal to 100"),
    Case("invalid-regex",
         replace("traffic.yaml", 'x-canary: {exact: "true"}', 'x-canary: {regex: "(true"}'),
         "traffic.yaml", "spec.http[0].match[0].headers.x-canary.regex:", "invalid regex '(true'"),
    Case("string-match-two-kinds",
         replace("traffic.yaml", 'x-canary: {exact: "true"}', 'x-canary: {exact: "true", prefix: "t"}'),
         "traffic.yaml", "spec.http[0].match[0].headers.x-canary:", "exactly one of exact, prefix, regex"),
    Case("app-and-command",
         replace("mesh.yaml", "    app:\n      responseBytes: 64",
                 "    command: [python3, -m, http.server]\n    app:\n      responseBytes: 64"),
         "mesh.yaml", "Mesh/shop: spec.services[2]:", "either 'app'"),
    Case("version-app-and-command",
         replace("mesh.yaml", "  - name: reviews\n", "  - name: reviews\n    command: [python3, -m, http.server]\n"),
         "mesh.yaml", "Mesh/shop: spec.services[3]:", "or 'command', not both"),
    Case("empty-mesh-directory", remove_all_yaml, "mesh", "", "no *.yaml files"),
    Case("two-mesh-documents", copy_file("mesh.yaml", "mesh2.yaml"),
         "mesh2.yaml", "Mesh/shop: kind:", "expected exactly one 'kind: Mesh' document, found 2"),
    Case("no-mesh-document", lambda root: (root / "mesh.yaml").unlink(),
         "mesh", ": kind:", "no 'kind: Mesh' document"),
    Case("non-dns-service-name",
         replace("mesh.yaml", "- name: catalog\n", "- name: Catalog_Service\n"),
         "mesh.yaml", "spec.services[1].name:", "should match pattern"),
    Case("second-destinationrule-same-host",
         append("traffic.yaml", "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
                                "metadata: {name: reviews-again}\n"
                                "spec: {host: reviews.default.svc.cluster.local}\n"),
         "traffic.yaml", "DestinationRule/reviews-again: spec.host:", "a second DestinationRule"),
    Case("destinationrule-unknown-host",
         replace("traffic.yaml", "host: inventory\n", "host: payments\n"),
         "traffic.yaml", "DestinationRule/inventory: spec.host:", "unknown host 'payments'"),
    Case("peerauthentication-bad-mode",
         replace("security.yaml", "mode: STRICT", "mode: STRICTEST"),
         "security.yaml", "PeerAuthentication/default: spec.mtls.mode:", "'STRICT'"),
    Case("virtualservice-without-http",
         replace("traffic.yaml", "  hosts: [inventory]\n  http:\n  - route:\n    - destination: {host: inventory}\n"
                                 "    timeout: 1s\n", "  hosts: [inventory]\n"),
         "traffic.yaml", "VirtualService/inventory: spec.http:", "Field required"),
    Case("document-not-a-mapping",
         append("security.yaml", "---\n- just\n- a list\n"),
         "security.yaml", "document 3:", "expected a mapping"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_invalid_mesh_is_rejected_with_one_line(tmp_path: Path, case: Case) -> None:
    root = mesh_with(tmp_path, case.edit)
    with pytest.raises(InvalidMeshConfig) as info:
        load_mesh(root)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    assert all("\n" not in p for p in info.value.problems)
    assert len(info.value.problems) == 1, info.value.problems  # the case breaks exactly one thing
    assert message.startswith(str(root)), message
    assert case.file in message, message
    if case.field:
        assert case.field in message, message
    assert case.reason in message, message


def test_cases_are_distinct() -> None:
    assert len({c.id for c in CASES}) == len(CASES) >= 18


def _line_of(root: Path, file: str, fragment: str) -> int:
    lines = (root / file).read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(lines, 1) if fragment in line)


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    root = mesh_with(tmp_path, replace("traffic.yaml", "    timeout: 2s\n", "    timeout: 2s: later\n"))
    with pytest.raises(InvalidMeshConfig) as info:
        load_mesh(root)
    message = str(info.value)
    line = _line_of(root, "traffic.yaml", "timeout: 2s: later")
    assert "\n" not in message
    assert message.startswith(f"{root / 'traffic.yaml'}:{line}: YAML syntax error:"), message
    assert "mapping values are not allowed" in message


def test_yaml_unclosed_quote_points_at_where_it_starts(tmp_path: Path) -> None:
    root = mesh_with(tmp_path, replace("security.yaml", "principals: [cluster.local/ns/default/sa/catalog]",
                                       'principals: ["cluster.local/ns/default/sa/catalog]'))
    with pytest.raises(InvalidMeshConfig) as info:
        load_mesh(root)
    message = str(info.value)
    start = _line_of(root, "security.yaml", '"cluster.local')
    assert "\n" not in message
    assert message.startswith(f"{root / 'security.yaml'}:"), message
    assert f"while scanning a quoted scalar started at line {start}" in message, message


def test_unreadable_yaml_character_is_one_line(tmp_path: Path) -> None:
    root = mesh_with(tmp_path, replace("mesh.yaml", "name: shop", "name: shop\x07"))
    with pytest.raises(InvalidMeshConfig) as info:
        load_mesh(root)
    message = str(info.value)
    assert "\n" not in message, message
    line = _line_of(root, "mesh.yaml", "name: shop")
    assert message.startswith(f"{root / 'mesh.yaml'}:{line}: YAML syntax error:"), message
    assert "unacceptable character #x0007" in message


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidMeshConfig, match="mesh directory does not exist"):
        load_mesh(tmp_path / "nope")


def test_several_problems_are_all_listed_but_shown_as_one_line(tmp_path: Path) -> None:
    unknown_subset = replace("traffic.yaml", "subset: v2}\n      weight: 20", "subset: v3}\n      weight: 20")
    root = mesh_with(tmp_path, unknown_subset,
                     replace("traffic.yaml", "timeout: 1s", "timeout: 1 second"))
    with pytest.raises(InvalidMeshConfig) as info:
        load_mesh(root)
    problems = info.value.problems
    assert len(problems) == 1  # the bad duration fails schema validation, before cross-checks
    root = mesh_with(tmp_path / "b", unknown_subset,
                     replace("traffic.yaml", "hosts: [inventory]", "hosts: [payments]"))
    with pytest.raises(InvalidMeshConfig) as info:
        load_mesh(root)
    assert len(info.value.problems) == 2
    assert str(info.value) == f"{info.value.problems[0]} (+1 more)"
    assert "\n" not in str(info.value)


def test_line_break_in_a_name_stays_on_one_line(tmp_path: Path) -> None:
    root = mesh_with(tmp_path, replace("traffic.yaml", "VirtualService\nmetadata: {name: inventory}",
                                       'VirtualService\nmetadata: {name: "inv\\nentory"}'))
    with pytest.raises(InvalidMeshConfig) as info:
        load_mesh(root)
    assert "\n" not in str(info.value)
    assert "metadata.name" in str(info.value)


UNSUPPORTED = [
    pytest.param(replace("traffic.yaml", "    timeout: 1s\n", "    timeout: 1s\n    rewrite: {uri: /v2}\n"),
                 "traffic.yaml", "VirtualService/inventory", "spec.http[0].rewrite", id="vs-rewrite"),
    pytest.param(replace("traffic.yaml", "    loadBalancer: {simple: ROUND_ROBIN}\n",
                         "    loadBalancer: {simple: ROUND_ROBIN}\n    tls: {mode: ISTIO_MUTUAL, sni: catalog}\n"),
                 "traffic.yaml", "DestinationRule/catalog", "spec.trafficPolicy.tls.sni", id="dr-tls-sni"),
    pytest.param(replace("traffic.yaml", "  - name: v2\n    labels: {version: v2}\n",
                         "  - name: v2\n    labels: {version: v2}\n    trafficPolicy:\n"
                         "      loadBalancer: {consistentHash: {httpHeaderName: x-user}}\n"),
                 "traffic.yaml", "DestinationRule/reviews", "spec.subsets[1].trafficPolicy.loadBalancer.consistentHash",
                 id="dr-subset-consistent-hash"),
    pytest.param(replace("security.yaml", "        principals: [cluster.local/ns/default/sa/catalog]\n",
                         "        principals: [cluster.local/ns/default/sa/catalog]\n"
                         "      name: callers\n"),
                 "security.yaml", "AuthorizationPolicy/inventory-callers", "spec.rules[0].from[0].name",
                 id="authz-from-unknown-key"),
    pytest.param(replace("security.yaml", "  mtls: {mode: STRICT}\n",
                         "  mtls: {mode: STRICT}\n  targetRef: {kind: Service, name: inventory}\n"),
                 "security.yaml", "PeerAuthentication/default", "spec.targetRef", id="peerauth-target-ref"),
    pytest.param(replace("mesh.yaml", "  - name: catalog\n", "  - name: catalog\n    replicas: 3\n"),
                 "mesh.yaml", "Mesh/shop", "spec.services[1].replicas", id="mesh-service-replicas"),
]


@pytest.mark.parametrize(("edit", "file", "resource", "field"), UNSUPPORTED)
def test_unsupported_field_warns_and_loads(tmp_path: Path, edit: Edit, file: str, resource: str,
                                          field: str) -> None:
    loaded = load_mesh(mesh_with(tmp_path, edit))
    matching = [w for w in loaded.warnings if field in w]
    assert len(matching) == 1, loaded.warnings
    warning = matching[0]
    assert warning.startswith(str(tmp_path / "mesh" / file)), warning
    assert f"{resource}: {field}: unsupported field" in warning, warning
    assert "\n" not in warning


def test_default_mesh_loads_without_warnings() -> None:
    loaded = load_mesh(default_mesh_dir())
    assert loaded.warnings == []
    assert sorted(Path(f).name for f in loaded.files) == ["mesh.yaml", "security.yaml", "traffic.yaml"]
