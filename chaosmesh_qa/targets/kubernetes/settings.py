"""Configuration of the Kubernetes target, and the API client built from it.

``chaosmesh_qa.targets.get_target`` and the ``reap`` / ``plan`` commands call ``KubeSettings.from_configuration``
(experiment configuration first, then the environment) and ``api_client(settings)``.

What comes from chaostoolkit-kubernetes (``chaosk8s``) and why: its conventions, so that a Chaos Toolkit user's
existing set-up keeps working — ``KUBECONFIG`` (resolved with its ``get_config_path``), the ``KUBERNETES_CONTEXT``
variable for the context, and ``CHAOSTOOLKIT_IN_POD=true`` for the in-cluster service account.  Not its
``create_k8s_api_client``: that one loads the kubeconfig into the process-wide default client configuration and
cannot take an explicit kubeconfig path, while this target needs one self-contained client per configuration
(a reaper and a run may point at different clusters) and checks the context itself so that a typo is one line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaosk8s import get_config_path
from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

from chaosmesh_qa.errors import InvalidArgument, TargetUnavailable

IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# configuration key -> environment variable read when the key is absent
KEYS = {
    "chaosmesh_qa_kubeconfig": "KUBECONFIG",
    "chaosmesh_qa_kube_context": "CHAOSMESH_QA_KUBE_CONTEXT",
    "chaosmesh_qa_namespace": "CHAOSMESH_QA_NAMESPACE",
    "chaosmesh_qa_namespaces": "CHAOSMESH_QA_NAMESPACES",
    "chaosmesh_qa_prometheus_url": "CHAOSMESH_QA_PROMETHEUS_URL",
    "chaosmesh_qa_ingress_url": "CHAOSMESH_QA_INGRESS_URL",
    "chaosmesh_qa_ingress_service": "CHAOSMESH_QA_INGRESS_SERVICE",
    "chaosmesh_qa_dry_run": "CHAOSMESH_QA_DRY_RUN",
    "chaosmesh_qa_trust_domain": "CHAOSMESH_QA_TRUST_DOMAIN",
    "chaosmesh_qa_ingress_gateway": "CHAOSMESH_QA_INGRESS_GATEWAY",
}
# The canonical service of Istio's ingress gateway pods as istioctl's default profile installs them; Istio's Helm
# gateway chart names them after the release (`helm install istio-ingress istio/gateway`: istio-ingress)
DEFAULT_INGRESS_GATEWAY = "istio-ingressgateway"
REQUEST_TIMEOUT_S = (5.0, 30.0)  # connect, read: an unreachable API server is one line within seconds


@dataclass
class KubeSettings:
    kubeconfig: str | None = None  # None: in-cluster service account
    context: str | None = None
    namespaces: list[str] = field(default_factory=list)  # first one: where faults of unqualified names go
    prometheus_url: str | None = None
    ingress_url: str | None = None
    ingress_service: str | None = None
    dry_run: bool = False
    trust_domain: str | None = None  # None: the mesh's (the istio ConfigMap's meshConfig.trustDomain)
    ingress_gateway: str = DEFAULT_INGRESS_GATEWAY  # the canonical service of the ingress gateway's pods

    @classmethod
    def from_configuration(cls, configuration: Mapping[str, Any] | None, **overrides: Any) -> KubeSettings:
        configuration = configuration or {}

        def value(key: str) -> Any:
            if overrides.get(key) not in (None, "", ()):
                return overrides[key]
            got = configuration.get(key)
            return got if got not in (None, "") else (os.environ.get(KEYS[key]) or None)

        namespaces = _names("chaosmesh_qa_namespaces", value("chaosmesh_qa_namespaces"))
        single = value("chaosmesh_qa_namespace")
        if single is not None:
            namespaces = [*_names("chaosmesh_qa_namespace", single), *[n for n in namespaces if n != single]]
        kubeconfig = value("chaosmesh_qa_kubeconfig")
        context = value("chaosmesh_qa_kube_context") or os.environ.get("KUBERNETES_CONTEXT") or None
        if kubeconfig is None and not _in_cluster():
            kubeconfig = get_config_path()  # ~/.kube/config unless KUBECONFIG says otherwise
        if kubeconfig is not None:
            kubeconfig = str(kubeconfig)
            if os.pathsep not in kubeconfig and not Path(kubeconfig).is_file():
                raise InvalidArgument(f"configuration.chaosmesh_qa_kubeconfig: no kubeconfig file at {kubeconfig} "
                                      "(set it, KUBECONFIG, or run in a pod with CHAOSTOOLKIT_IN_POD=true)")
        settings = cls(kubeconfig, context, namespaces, _url("chaosmesh_qa_prometheus_url",
                                                                 value("chaosmesh_qa_prometheus_url")),
                       _url("chaosmesh_qa_ingress_url", value("chaosmesh_qa_ingress_url")),
                       value("chaosmesh_qa_ingress_service"), _flag(value("chaosmesh_qa_dry_run")),
                       _trust_domain(value("chaosmesh_qa_trust_domain")),
                       _gateway(value("chaosmesh_qa_ingress_gateway")))
        if not settings.namespaces:
            settings.namespaces = [settings.default_namespace()]
        return settings

    def default_namespace(self) -> str:
        """The kubeconfig context's namespace (or the pod's own, in cluster), else ``default``."""
        if self.kubeconfig is None:
            try:
                return IN_CLUSTER_NAMESPACE.read_text().strip() or "default"
            except OSError:
                return "default"
        context = self._context()
        return str(context.get("context", {}).get("namespace") or "default")

    def current_context_name(self) -> str | None:
        """The kubeconfig's context in use (None in cluster, or when the kubeconfig cannot be read)."""
        if self.kubeconfig is None:
            return None
        try:
            return str(self._context().get("name") or "") or None
        except InvalidArgument:
            return None

    def _context(self) -> dict[str, Any]:
        try:
            contexts, current = config.list_kube_config_contexts(config_file=self.kubeconfig)
        except (ConfigException, OSError, ValueError) as exc:
            raise InvalidArgument(f"configuration.chaosmesh_qa_kubeconfig: {self.kubeconfig}: "
                                  f"{' '.join(str(exc).split())}") from None
        if self.context is None:
            return dict(current or {})
        for context in contexts:
            if context.get("name") == self.context:
                return dict(context)
        known = ", ".join(sorted(str(c.get("name")) for c in contexts)) or "none"
        raise InvalidArgument(f"configuration.chaosmesh_qa_kube_context: no context {self.context!r} in "
                              f"{self.kubeconfig} (known: {known})")


def api_client(settings: KubeSettings) -> client.ApiClient:
    """A self-contained client (no process-wide state) for the configured cluster."""
    configuration = client.Configuration()
    try:
        if settings.kubeconfig is None:
            config.load_incluster_config(client_configuration=configuration)
        else:
            settings._context()  # an unknown context is one line naming it, before the client's own error
            config.load_kube_config(config_file=settings.kubeconfig, context=settings.context,
                                    client_configuration=configuration, persist_config=False)
    except ConfigException as exc:
        where = "in-cluster service account" if settings.kubeconfig is None else settings.kubeconfig
        raise TargetUnavailable(f"kubernetes: cannot load {where}: {' '.join(str(exc).split())}") from None
    configuration.retries = 0  # an unreachable API server fails at once, not after urllib3's retries
    return client.ApiClient(configuration)


def _in_cluster() -> bool:
    return os.environ.get("CHAOSTOOLKIT_IN_POD") == "true" or (
        "KUBERNETES_SERVICE_HOST" in os.environ and not Path(get_config_path()).is_file()
        and "KUBECONFIG" not in os.environ)


def _names(key: str, raw: Any) -> list[str]:
    items = raw.split(",") if isinstance(raw, str) else raw if isinstance(raw, list) else None
    if raw is None:
        return []
    if items is None or not all(isinstance(i, str) and i.strip() for i in items):
        raise InvalidArgument(f"configuration.{key}: expected a namespace name or a list of them, got {raw!r}")
    return [i.strip() for i in items]


def _url(key: str, raw: Any) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw.startswith(("http://", "https://")):
        raise InvalidArgument(f"configuration.{key}: expected an http(s) URL, got {raw!r}")
    return raw.rstrip("/")


def _flag(raw: Any) -> bool:
    if raw is None or isinstance(raw, bool):
        return bool(raw)
    if isinstance(raw, str) and raw.lower() in ("1", "true", "yes", "0", "false", "no"):
        return raw.lower() in ("1", "true", "yes")
    raise InvalidArgument(f"configuration.chaosmesh_qa_dry_run: expected true or false, got {raw!r}")


_TRUST_DOMAIN = re.compile(r"[a-z0-9]([-a-z0-9._]{0,253}[a-z0-9])?")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def _trust_domain(value: Any) -> str | None:
    """A SPIFFE trust domain: DNS-like labels (``cluster.local``, ``prod.example.com``)."""
    return None if value is None else _matching("chaosmesh_qa_trust_domain", value, _TRUST_DOMAIN,
                                                "a SPIFFE trust domain (lower-case letters, digits, '.', '-', '_')")


def _gateway(value: Any) -> str:
    """The ingress gateway's canonical service: a DNS-1123 label."""
    return DEFAULT_INGRESS_GATEWAY if value is None else _matching(
        "chaosmesh_qa_ingress_gateway", value, _DNS_LABEL,
        "a canonical service name (a DNS-1123 label, e.g. istio-ingress)")


def _matching(key: str, value: Any, pattern: re.Pattern[str], what: str) -> str:
    text = str(value)
    if not pattern.fullmatch(text):
        raise InvalidArgument(f"configuration.{key}: {text!r} is not {what}")
    return text
