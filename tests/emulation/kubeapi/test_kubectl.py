"""What a chaos engineer's other Kubernetes clients do on pods, against the emulation and the real sandbox.

``kubectl get pods``, ``describe pod``, ``logs`` (``-c``, ``--previous``, ``-f``) and ``delete pod``; the python
client's ``read_namespaced_pod_log`` with each option (what chaostoolkit-kubernetes' ``read_pod_logs`` calls),
and the API server's refusals, word for word.  The logs are the files the sandbox keeps: the demo app writes
one line once it listens (``chaosmesh_qa.apps.demo.started_line``).  The pods' options without processes:
tests/emulation/kubeapi/test_logs.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from chaosmesh_qa.targets.local.target import LocalTarget
from tests.support.kube import KubeSandbox

pytestmark = pytest.mark.processes

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z"


def core(box: KubeSandbox) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=str(box.kubeconfig)))


def pods(box: KubeSandbox, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(box.kubectl("get", "pods", "-l", selector, "-o", "json").stdout)["items"]
    return items


def started(pod: dict[str, Any]) -> str:
    """The line the demo app of ``pod`` logs once it listens."""
    meta = pod["metadata"]
    port = json.loads(meta["annotations"]["chaosmesh-qa.io/sandbox-ports"])["app"]
    labels = meta["labels"]
    return f"{labels['app']} {labels['version']} (pod {meta['name']}) serving on http://127.0.0.1:{port}\n"


def ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"]["conditions"])


def wait_for(check: Any, timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
    return found


def status_of(error: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(error.body)
    return body


def test_kubectl_get_describe_logs_and_delete_a_pod(kube_sandbox: KubeSandbox) -> None:
    box = kube_sandbox
    table = box.kubectl("get", "pods", "-l", "app=inventory").stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"] and len(table) == 3
    victim = pods(box, "app=inventory")[0]
    name = victim["metadata"]["name"]

    described = box.kubectl("describe", "pod", name).stdout
    for expected in (f"Name:             {name}", "Status:           Running",
                     "Controlled By:  ReplicaSet/inventory-v1-", "kubectl.kubernetes.io/default-container: app",
                     "  app:", "  istio-proxy:"):
        assert expected in described, described

    assert box.kubectl("logs", name, "-c", "app").stdout == started(victim)
    # without -c, kubectl picks the container the pod's default-container annotation names, as Istio's pods have
    plain = box.kubectl("logs", name)
    assert plain.stdout == started(victim) and "Defaulted container" not in plain.stderr
    assert box.kubectl("logs", name, "-c", "istio-proxy").returncode == 0
    assert re.fullmatch(f"{STAMP} {re.escape(started(victim))}",
                        box.kubectl("logs", name, "-c", "app", "--timestamps").stdout)
    previous = box.kubectl("logs", name, "-c", "app", "--previous", check=False)
    assert previous.returncode != 0
    assert f'previous terminated container "app" in pod "{name}" not found' in previous.stderr

    before = {p["metadata"]["name"] for p in pods(box, "app=inventory")}
    deleted = box.kubectl("delete", "pod", name)  # kubectl waits until the pod is gone (a watch)
    assert deleted.stdout.strip() == f'pod "{name}" deleted'
    assert name not in box.kubectl("get", "pods", "-l", "app=inventory", "-o", "name").stdout
    replacement = wait_for(lambda: next((p for p in pods(box, "app=inventory")
                                         if p["metadata"]["name"] not in before and ready(p)), None))
    assert box.kubectl("logs", replacement["metadata"]["name"], "-c", "app").stdout == started(replacement)
    logs = box.kubectl("logs", name, "-c", "app", check=False)
    assert logs.returncode != 0 and f'pods "{name}" not found' in logs.stderr


def test_the_api_answers_log_requests_as_the_kube_apiserver(kube_sandbox: KubeSandbox) -> None:
    api, pod = core(kube_sandbox), pods(kube_sandbox, "app=catalog")[0]
    name = pod["metadata"]["name"]
    calls = len(kube_sandbox.call_log())

    with pytest.raises(ApiException) as no_container:  # what read_pod_logs sends without container_name
        api.read_namespaced_pod_log(name, "default", container="")
    assert no_container.value.status == 400
    body = status_of(no_container.value)
    assert (body["kind"], body["reason"], body["message"]) == (
        "Status", "BadRequest", f"a container name must be specified for pod {name}, choose one of: [app istio-proxy]")
    with pytest.raises(ApiException) as unknown:
        api.read_namespaced_pod_log("catalog-v1-000000", "default", container="app")
    assert unknown.value.status == 404 and status_of(unknown.value)["message"] == 'pods "catalog-v1-000000" not found'
    with pytest.raises(ApiException) as no_previous:
        api.read_namespaced_pod_log(name, "default", container="app", previous=True)
    assert no_previous.value.status == 400
    assert status_of(no_previous.value)["message"] == f'previous terminated container "app" in pod "{name}" not found'
    with pytest.raises(ApiException) as invalid:
        api.read_namespaced_pod_log(name, "default", container="app", tail_lines=-1)
    assert invalid.value.status == 422 and status_of(invalid.value)["reason"] == "Invalid"

    raw = api.read_namespaced_pod_log(name, "default", container="app", timestamps=True, _preload_content=False)
    assert raw.headers["Content-Type"] == "text/plain"
    assert re.fullmatch(f"{STAMP} {re.escape(started(pod))}", raw.data.decode())
    line = started(pod)
    assert api.read_namespaced_pod_log(name, "default", container="app") == line
    assert api.read_namespaced_pod_log(name, "default", container="app", tail_lines=0) == ""
    assert api.read_namespaced_pod_log(name, "default", container="app", limit_bytes=7) == line[:7]
    assert api.read_namespaced_pod_log(name, "default", container="app", since_seconds=3600) == line
    logged = [c for c in kube_sandbox.call_log(calls) if c.get("subresource") == "log"]
    assert [(c["verb"], c["resource"], c["code"]) for c in logged] == [("get", "pods", code) for code in
                                                                      (400, 404, 400, 422, 200, 200, 200, 200, 200)]


def test_previous_logs_and_follow_across_an_app_restart(kube_sandbox: KubeSandbox, tmp_path: Path) -> None:
    box = kube_sandbox
    pod = pods(box, "app=reviews,version=v2")[0]  # one replica: the app-kill fault's victim
    name = pod["metadata"]["name"]
    first = box.kubectl("logs", name, "-c", "app", "--timestamps").stdout
    with open(tmp_path / "follow.txt", "w") as out:
        follow = subprocess.Popen(["kubectl", "--kubeconfig", str(box.kubeconfig), "logs", "-f", name, "-c", "app"],
                                  stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        time.sleep(1)  # kubectl is following
        record = LocalTarget(box.state_dir).kill_app("reviews", count=1, percent=None, version="v2",
                                                     restart_after_s=1, owner="test-logs")
        assert record["changes"]["app_killed_in_pods"] == [name]
        again = wait_for(lambda: next((p for p in pods(box, "app=reviews,version=v2") if ready(p)
                                       and p["status"]["containerStatuses"][0]["restartCount"] >= 1), None))
        assert again["metadata"]["name"] == name  # restarted in place, as a kubelet restarts a container
        assert follow.wait(timeout=15) == 0  # the followed instance is gone: the stream ends
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    assert (tmp_path / "follow.txt").read_text() == started(pod)
    assert box.kubectl("logs", name, "-c", "app", "--previous", "--timestamps").stdout == first
    current = box.kubectl("logs", name, "-c", "app", "--timestamps").stdout
    assert current.split(" ", 1)[1] == started(pod) and current.split(" ", 1)[0] > first.split(" ", 1)[0]
    assert box.kubectl("logs", name, "-c", "app", "--since=1h").stdout == started(pod)
