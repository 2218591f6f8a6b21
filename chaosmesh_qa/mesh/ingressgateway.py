"""The ingress gateway the mesh's Istio Gateways select: its name, namespace, pod labels and service account.

``gateways.Ingress`` calls ``selected_by`` with the selectors of the mesh's Istio Gateways; ``build`` puts the
answer in ``MeshModel.ingress_gateway``, which every part that names the gateway reads (its identity, the
AuthorizationPolicies and EnvoyFilters that reach it, its NetworkPolicy source, its Istio metrics, the sandbox's
gateway pod).  Without a Gateway, or with one selecting ``istio: ingressgateway``, it is the gateway of Istio's
default profile (``istioctl install``): ``istio-ingressgateway`` in ``istio-system``, service account
``istio-ingressgateway-service-account``.  A selector naming another gateway is read as Istio's gateway Helm chart
(``helm install <name> istio/gateway -n istio-ingress``) names one: pods labelled ``app: <name>`` and
``istio: <name without "istio-">``, service account ``<name>``, in namespace ``istio-ingress`` (the namespace
Istio's documentation installs it in; a selector cannot say).  So ``istio: ingress`` is ``istio-ingress``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

DEFAULT_NAME = "istio-ingressgateway"
HELM_NAMESPACE = "istio-ingress"


@dataclass(frozen=True)
class IngressGateway:
    name: str = DEFAULT_NAME
    namespace: str = "istio-system"
    labels: dict[str, str] = field(default_factory=lambda: {"app": DEFAULT_NAME, "istio": "ingressgateway"})
    service_account: str = "istio-ingressgateway-service-account"


DEFAULT = IngressGateway()


def helm_chart(name: str) -> IngressGateway:
    """The gateway Istio's gateway Helm chart installs as release ``name``."""
    if name == DEFAULT_NAME:
        return DEFAULT
    return IngressGateway(name, HELM_NAMESPACE, {"app": name, "istio": name.removeprefix("istio-")}, name)


def selected_by(selectors: Sequence[tuple[str, Mapping[str, str]]], problems: list[str]) -> IngressGateway:
    """The one gateway every ``(where, selector)`` selects (the sandbox runs one ingress gateway)."""
    if not selectors:
        return DEFAULT
    where, first = selectors[0]
    name = first.get("app") or (f"istio-{first['istio']}" if first.get("istio") else DEFAULT_NAME)
    gateway = helm_chart(name)
    for where, selector in selectors:
        if any(gateway.labels.get(k) != v for k, v in selector.items()):
            shown = ", ".join(f"{k}={v}" for k, v in selector.items())
            problems.append(f"{where}: spec.selector: {shown} selects no gateway of the sandbox (its one ingress "
                            f"gateway, {gateway.name}, has the labels "
                            f"{', '.join(f'{k}={v}' for k, v in gateway.labels.items())})")
    return gateway
