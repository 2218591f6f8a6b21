"""The Kubernetes API emulation against real kubectl, the python kubernetes client and the real sandbox."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from tests.support.cli import run_cli
from tests.support.client import get_many, hops
from tests.support.kube import KubeSandbox

pytestmark = pytest.mark.processes


def api(box: KubeSandbox) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(box.kubeconfig))


def test_up_writes_a_private_kubeconfig_and_status_names_it(kube_sandbox: KubeSandbox) -> None:
    status = kube_sandbox.status()
    assert status["kube_api_url"].startswith("https://127.0.0.1:")
    assert status["kubeconfig"] == str(kube_sandbox.state_dir / "kubeconfig")
    assert kube_sandbox.kubeconfig.stat().st_mode & 0o777 == 0o600
    version = kube_sandbox.kubectl("version", "-o", "json").stdout
    assert '"gitVersion": "v1.32.0+chaosmesh-qa-emulation"' in version


def test_kubectl_lists_catalog_pods_with_istio_labels(kube_sandbox: KubeSandbox) -> None:
    pods = json.loads(kube_sandbox.kubectl("get", "pods", "-l", "app=catalog", "-o", "json").stdout)["items"]
    running = {p["name"] for p in kube_sandbox.status()["pods"] if p["service"] == "catalog"}
    assert {p["metadata"]["name"] for p in pods} == running and len(pods) == 2
    for pod in pods:
        labels = pod["metadata"]["labels"]
        assert labels["app"] == "catalog" and labels["version"] == "v1" and labels["pod-template-hash"]
        assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
        assert [c["name"] for c in pod["spec"]["containers"]] == ["app", "istio-proxy"]
        assert pod["spec"]["serviceAccountName"] == "catalog"
        assert pod["status"]["phase"] == "Running" and pod["status"]["podIP"] == "127.0.0.1"
        assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"] == "True"
    table = kube_sandbox.kubectl("get", "pods", "-l", "app=catalog,version in (v1)").stdout
    assert table.split()[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"] and table.count("2/2") == 2


def test_kubectl_force_delete_replaces_the_pod_like_a_replicaset(kube_sandbox: KubeSandbox) -> None:
    core = client.CoreV1Api(api(kube_sandbox))
    before = {p.metadata.name for p in core.list_namespaced_pod("default", label_selector="app=catalog").items}
    victim = sorted(before)[0]
    events: list[tuple[str, str, bool]] = []
    rv = core.list_namespaced_pod("default", label_selector="app=catalog").metadata.resource_version
    kube_sandbox.kubectl("delete", "pod", victim, "--grace-period=0", "--force")
    stream = watch.Watch().stream(core.list_namespaced_pod, "default", label_selector="app=catalog",
                                  resource_version=rv, timeout_seconds=30)
    replacement = None
    for event in stream:  # bounded by timeout_seconds
        pod = event["object"]
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        events.append((event["type"], pod.metadata.name, ready))
        if event["type"] != "DELETED" and pod.metadata.name not in before and ready:
            replacement = pod.metadata.name
            break
    assert ("DELETED", victim, True) in events, events
    assert replacement is not None and replacement.startswith("catalog-v1-"), events
    assert [e[0] for e in events].index("DELETED") < [e[1] for e in events].index(replacement)
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_pod(victim, "default")
    assert gone.value.status == 404
    # the replacement serves: requests through the ingress reach it (bounded: 10 s of traffic at most)
    seen: Counter[str] = Counter()
    deadline = time.monotonic() + 10
    while seen[replacement] == 0 and time.monotonic() < deadline:
        for code, tree in get_many(kube_sandbox.ingress_url + "/", 40):
            assert code == 200
            seen.update(h["pod"] for h in hops(tree) if h["service"] == "catalog")
    assert seen[replacement] > 0, seen


def test_python_client_reads_services_endpoints_namespaces(kube_sandbox: KubeSandbox) -> None:
    core = client.CoreV1Api(api(kube_sandbox))
    assert {"default", "istio-system"} <= {n.metadata.name for n in core.list_namespace().items}
    svc = core.read_namespaced_service("inventory", "default")
    assert svc.spec.selector == {"app": "inventory"}
    endpoints = core.read_namespaced_endpoints("inventory", "default")
    ready = {a.target_ref.name for s in endpoints.subsets for a in s.addresses or []}
    assert ready == {p["name"] for p in kube_sandbox.status()["pods"] if p["service"] == "inventory"}


def test_configmaps_crud_with_optimistic_concurrency(kube_sandbox: KubeSandbox) -> None:
    core = client.CoreV1Api(api(kube_sandbox))
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="lease-test", labels={"k": "v"}),
                              data={"record.json": "{}"})
    created = core.create_namespaced_config_map("default", body)
    with pytest.raises(ApiException) as exists:
        core.create_namespaced_config_map("default", body)
    assert exists.value.status == 409
    patched = core.patch_namespaced_config_map("lease-test", "default",
                                               {"metadata": {"annotations": {"a": "1"}}, "data": {"x": "y"}})
    assert patched.data == {"record.json": "{}", "x": "y"} and patched.metadata.annotations == {"a": "1"}
    stale = {"metadata": {"resourceVersion": created.metadata.resource_version}, "data": {"z": "1"}}
    with pytest.raises(ApiException) as conflict:
        core.patch_namespaced_config_map("lease-test", "default", stale)
    assert conflict.value.status == 409
    assert [c.metadata.name for c in core.list_namespaced_config_map("default", label_selector="k=v").items] \
        == ["lease-test"]
    core.delete_namespaced_config_map("lease-test", "default")
    assert core.list_namespaced_config_map("default", label_selector="k").items == []


def _status(exc: ApiException) -> dict[str, Any]:
    return dict(json.loads(exc.body))


def test_unimplemented_calls_get_a_status_naming_them(kube_sandbox: KubeSandbox) -> None:
    core = client.CoreV1Api(api(kube_sandbox))
    pod = core.list_namespaced_pod("default").items[0]
    with pytest.raises(ApiException) as put:
        core.replace_namespaced_pod(pod.metadata.name, "default", pod)
    status = _status(put.value)
    assert (put.value.status, status["kind"], status["status"], status["reason"]) == \
        (405, "Status", "Failure", "MethodNotAllowed")
    assert "the chaosmesh-qa Kubernetes API emulation does not implement PUT pods" in status["message"]
    with pytest.raises(ApiException) as secrets:
        core.list_namespaced_secret("default")
    assert secrets.value.status == 404 and "does not implement the resource 'secrets'" in _status(secrets.value)[
        "message"]
    result = kube_sandbox.kubectl("exec", pod.metadata.name, "--", "true", check=False)
    assert result.returncode != 0 and "does not implement POST pods/exec" in result.stderr


def test_bad_token_is_401_and_forbid_hook_is_403(kube_sandbox: KubeSandbox) -> None:
    result = kube_sandbox.kubectl("--token", "not-the-token", "get", "pods", check=False)
    assert result.returncode != 0 and "Unauthorized" in result.stderr
    core = client.CoreV1Api(api(kube_sandbox))
    core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="f")))
    try:
        with pytest.raises(ApiException) as forbidden:
            core.replace_namespaced_config_map("f", "default", client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name="f"), data={"a": "b"}))
        assert forbidden.value.status == 403
        assert 'cannot update resource "configmaps"' in _status(forbidden.value)["message"]
    finally:
        core.delete_namespaced_config_map("f", "default")


def test_call_log_names_verb_resource_namespace_and_name(kube_sandbox: KubeSandbox) -> None:
    core = client.CoreV1Api(api(kube_sandbox))
    name = core.list_namespaced_pod("default", label_selector="app=reviews").items[0].metadata.name
    core.read_namespaced_pod(name, "default")
    calls = kube_sandbox.call_log()
    assert {"verb": "list", "group": "", "version": "v1", "resource": "pods", "subresource": None,
            "namespace": "default", "name": None} in [{k: c.get(k) for k in (
                "verb", "group", "version", "resource", "subresource", "namespace", "name")} for c in calls]
    assert any(c.get("verb") == "get" and c.get("name") == name and c["code"] == 200 for c in calls)
    assert any(c.get("code") == 401 for c in calls)


def test_bad_forbid_rule_is_one_line_exit_2_and_starts_nothing(tmp_path: Path) -> None:
    result = run_cli("up", "--kube-api", "--kube-api-forbid", "destroy:pods", "--state-dir", str(tmp_path / "s"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "'destroy:pods' is not VERB:RESOURCE" in result.stderr
    assert not (tmp_path / "s").exists()
