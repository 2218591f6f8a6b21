"""PeerAuthentication documents to ``PeerAuthPolicy`` (with ``portLevelMtls``), and mTLS conflicts.

``build.build_model`` calls ``peer_authentications`` and, once the model stands, ``tls_warnings``.
As in Istio, callers use auto mTLS unless a DestinationRule sets ``tls.mode``: mTLS toward a
workload that accepts it, plaintext toward one whose mode is ``DISABLE`` (``envoy.clusters`` renders
that per endpoint).  A DestinationRule that forces the other way breaks every call, in Istio as
here: that is a warning naming the workloads.  ``tls.mode`` ``SIMPLE`` or ``MUTUAL`` toward a service of the
mesh originates TLS with the rule's own certificates, not the mesh identity: Istio's sidecar hands it to the
callee's sidecar, which refuses it when STRICT and otherwise passes it to the app as is; the sandbox sends
plaintext instead (it does not originate TLS), so either way the hop carries no mesh identity and is not mutual
TLS for the mTLS verdict; a warning says so per workload.
"""

from __future__ import annotations

from chaosmesh_qa.mesh import schema
from chaosmesh_qa.mesh.documents import Document
from chaosmesh_qa.mesh.model import MeshModel, ServiceModel, TrafficPolicy, selects
from chaosmesh_qa.mesh.security_model import PeerAuthPolicy


def peer_authentications(documents: list[Document], services: dict[str, ServiceModel], problems: list[str],
                         warnings: list[str]) -> tuple[PeerAuthPolicy, ...]:
    found = []
    for doc in documents:
        if doc.kind != "PeerAuthentication":
            continue
        spec: schema.PeerAuthenticationSpec = doc.spec  # type: ignore[assignment]
        selector = dict(spec.selector.match_labels) if spec.selector and spec.selector.match_labels else None
        port_modes: list[tuple[int, str]] = []
        for key, mtls in spec.port_level_mtls.items():
            where = f"{doc.where}: spec.portLevelMtls[{key!r}]"
            if not (key.isascii() and key.isdigit() and 1 <= int(key) <= 65535):
                problems.append(f"{where}: {key!r} is not a port number (1-65535)")
                continue
            if selector is None:
                warnings.append(f"{where}: portLevelMtls needs a selector (as in Istio): ignored, the policy's "
                                f"mode applies to every port")
                continue
            ports = {svc.pod_port for name, svc in services.items() if svc.namespace == doc.namespace
                     and any(selects(selector, v.labels) for v in svc.versions)}
            if int(key) not in ports:
                warnings.append(f"{where}: no workload this policy selects serves on port {key} (portLevelMtls "
                                "is keyed by the workload's port, a Service's targetPort; theirs: "
                                f"{', '.join(map(str, sorted(ports))) or 'none'}): this setting has no effect")
                continue
            port_modes.append((int(key), mtls.mode))
        found.append(PeerAuthPolicy(doc.namespace, selector, spec.mtls.mode if spec.mtls else "UNSET",
                                    tuple(port_modes)))
    return tuple(found)


def tls_warnings(model: MeshModel, warnings: list[str]) -> None:
    """A DestinationRule ``tls.mode`` that contradicts the callee's PeerAuthentication mode."""
    for name, svc in model.services.items():
        policies: list[tuple[str | None, TrafficPolicy]] = [(None, model.policies[name])]
        policies += [(subset.name, subset.policy) for subset in model.subsets.get(name, {}).values()]
        for subset, policy in policies:
            if not policy.tls_explicit:
                continue
            labels: dict[str, str] = model.subsets[name][subset].labels if subset else {}
            for version in svc.versions:
                if not selects(labels, model.workload_labels(name, version.name)):
                    continue
                mode = model.mtls_mode(name, version.name)
                target = f"{name!r} {version.name}" + (f" (subset {subset!r})" if subset else "")
                if policy.tls_mode == "ISTIO_MUTUAL" and mode == "DISABLE":
                    warnings.append(f"DestinationRule for {name!r}: tls.mode ISTIO_MUTUAL toward {target}, whose "
                                    "PeerAuthentication mode is DISABLE (plaintext only): every call to it fails, "
                                    "as in Istio")
                elif policy.tls_mode in ("DISABLE", "SIMPLE", "MUTUAL") and mode == "STRICT":
                    warnings.append(f"DestinationRule for {name!r}: tls.mode {policy.tls_mode} toward {target}, whose "
                                    "PeerAuthentication mode is STRICT (mTLS only): every call to it fails, "
                                    "as in Istio")
                elif policy.tls_mode in ("SIMPLE", "MUTUAL"):
                    warnings.append(f"DestinationRule for {name!r}: tls.mode {policy.tls_mode} toward {target} "
                                    "originates TLS with the rule's own certificates, not the mesh identity: Istio "
                                    "passes it to the app as is (which must terminate TLS itself); the sandbox sends "
                                    "plaintext to the app instead. Either way the hop is not mutual TLS for "
                                    "mtls_enforced")
