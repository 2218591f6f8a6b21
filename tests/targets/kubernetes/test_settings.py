"""Configuration of the Kubernetes target: keys, environment fallbacks, and one-line errors before any change."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import yaml

from chaosmesh_qa.errors import InvalidArgument, TargetUnavailable
from chaosmesh_qa.targets import get_target
from chaosmesh_qa.targets.kubernetes.settings import KubeSettings
from chaosmesh_qa.targets.kubernetes.target import KubernetesTarget

ENV = ("KUBECONFIG", "CHAOSMESH_QA_KUBE_CONTEXT", "CHAOSMESH_QA_NAMESPACE", "CHAOSMESH_QA_NAMESPACES",
       "CHAOSMESH_QA_PROMETHEUS_URL", "CHAOSMESH_QA_INGRESS_URL", "CHAOSMESH_QA_DRY_RUN", "KUBERNETES_CONTEXT",
       "CHAOSTOOLKIT_IN_POD", "CHAOSMESH_QA_TARGET")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def kubeconfig(path: Path, port: int) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "lab",
        "clusters": [{"name": "lab", "cluster": {"server": f"https://127.0.0.1:{port}",
                                                 "insecure-skip-tls-verify": True}}],
        "users": [{"name": "me", "user": {"token": "t0ken"}}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "me", "namespace": "shop"}},
                     {"name": "other", "context": {"cluster": "lab", "user": "me"}}]}))
    return path


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_keys_come_from_configuration_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = kubeconfig(tmp_path / "kubeconfig", 6443)
    settings = KubeSettings.from_configuration({"chaosmesh_qa_kubeconfig": str(config)})
    assert settings.namespaces == ["shop"], "the context's namespace"
    assert KubeSettings.from_configuration({"chaosmesh_qa_kubeconfig": str(config),
                                            "chaosmesh_qa_kube_context": "other"}).namespaces == ["default"]
    monkeypatch.setenv("KUBECONFIG", str(config))
    monkeypatch.setenv("CHAOSMESH_QA_NAMESPACES", "a,b")
    monkeypatch.setenv("CHAOSMESH_QA_PROMETHEUS_URL", "http://127.0.0.1:9090/")
    monkeypatch.setenv("CHAOSMESH_QA_DRY_RUN", "true")
    settings = KubeSettings.from_configuration({"chaosmesh_qa_namespace": "b"})
    assert (settings.kubeconfig, settings.namespaces) == (str(config), ["b", "a"])
    assert settings.prometheus_url == "http://127.0.0.1:9090" and settings.dry_run is True
    assert settings.ingress_gateway == "istio-ingressgateway", "istioctl's default profile names it so"
    monkeypatch.setenv("CHAOSMESH_QA_INGRESS_GATEWAY", "istio-ingress")  # `helm install istio-ingress istio/gateway`
    assert KubeSettings.from_configuration({}).ingress_gateway == "istio-ingress"
    monkeypatch.setenv("CHAOSMESH_QA_TARGET", "kubernetes")
    target = get_target({"chaosmesh_qa_target": "local"})
    assert isinstance(target, KubernetesTarget), "the environment switches the target of a run"
    assert (target.kind, target.metrics_dialect) == ("kubernetes", "istio")


@pytest.mark.parametrize(("configuration", "message"), [
    ({"chaosmesh_qa_kube_context": "nope"}, "configuration.chaosmesh_qa_kube_context: no context 'nope' in"),
    ({"chaosmesh_qa_kubeconfig": "/nonexistent/kubeconfig"}, "configuration.chaosmesh_qa_kubeconfig: no kubeconfig"),
    ({"chaosmesh_qa_prometheus_url": "prometheus:9090"}, "configuration.chaosmesh_qa_prometheus_url: expected an"),
    ({"chaosmesh_qa_dry_run": "maybe"}, "configuration.chaosmesh_qa_dry_run: expected true or false"),
    ({"chaosmesh_qa_namespaces": [""]}, "configuration.chaosmesh_qa_namespaces: expected a namespace"),
    ({"chaosmesh_qa_ingress_gateway": "Istio Ingress"}, "configuration.chaosmesh_qa_ingress_gateway: 'Istio Ingress' "
                                                        "is not a canonical service name"),
])
def test_bad_configuration_is_one_line(tmp_path: Path, configuration: dict, message: str) -> None:  # type: ignore[type-arg]
    config = kubeconfig(tmp_path / "kubeconfig", 6443)
    with pytest.raises(InvalidArgument) as raised:
        KubeSettings.from_configuration({"chaosmesh_qa_kubeconfig": str(config), **configuration})
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_unreachable_api_server_is_one_line_within_seconds(tmp_path: Path) -> None:
    config = kubeconfig(tmp_path / "kubeconfig", closed_port())
    target = get_target({"chaosmesh_qa_target": "kubernetes", "chaosmesh_qa_kubeconfig": str(config)})
    started = time.monotonic()
    with pytest.raises(TargetUnavailable) as raised:
        target.inject_latency("reviews", 200, 100, None, 10, "test:1")
    assert time.monotonic() - started < 5
    assert str(raised.value).startswith("kubernetes: cannot reach the API server at https://127.0.0.1:")
    assert "\n" not in str(raised.value)
