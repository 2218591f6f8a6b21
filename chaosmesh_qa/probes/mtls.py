"""mTLS verdict: every workload's inbound refuses plaintext and every hop carries its caller's identity.

Referenced from experiments as ``{"module": "chaosmesh_qa.probes.mtls", "func": "mtls_enforced"}``.
Three checks, all through ``MeshTarget``: the declared PeerAuthentication mode of each workload
(``declared_mesh``: PERMISSIVE and DISABLE workloads are named), a plaintext request to each
running pod (``check_plaintext_refused``: it must be refused, also for pods that replaced killed
ones with new certificates), and the caller identity on live hops (``observed_edges``: each hop's
principal must be its caller's SPIFFE id; the ingress's must be in the mesh's trust domain).

Like ``probes.routing`` it returns ``{"status": "pass" | "violated", "summary": ..., ...}`` for a
list tolerance ``["pass"]``; the summary (also logged) names every violation.
"""

from __future__ import annotations

import logging
from typing import Any

from chaosmesh_qa import checks
from chaosmesh_qa.errors import MeasurementFailed
from chaosmesh_qa.mesh.model import MeshModel
from chaosmesh_qa.probes.context import MeasureContext

__all__ = ["mtls_enforced"]

log = logging.getLogger("chaostoolkit")
INGRESS = "ingress"

Configuration = dict[str, Any]


def mtls_enforced(services: list[str] | None = None, samples: int = 20,
                  configuration: Configuration | None = None) -> dict[str, Any]:
    """Is mutual TLS enforced on every workload of ``services`` (default: all) and every hop into them?

    ``samples``: live requests whose hops are checked (local target).  Returns
    ``{"status": "pass" | "violated", "summary", "violations", "workloads", "edges"}``.
    """
    names = None if services is None else _names(services)
    count = checks.whole("samples", samples, 1, 1000)
    ctx = MeasureContext.from_configuration(configuration)
    chosen = sorted(ctx.description["services"]) if names is None else [ctx.service(n) for n in names]
    model = ctx.target.declared_mesh()
    violations: list[str] = []
    workloads = []
    for service in chosen:
        for version in model.services[service].versions:
            mode = model.mtls_mode(service, version.name)
            if mode != "STRICT":
                violations.append(f"{service}/{version.name} is {mode} (PeerAuthentication)")
            workloads.append({"service": service, "version": version.name, "mode": mode})
        pods = ctx.target.check_plaintext_refused(service)
        if not pods:
            raise MeasurementFailed(f"{service}: no running pod to try plaintext against")
        violations.extend(f"pod {p['pod']} accepted plaintext ({p['detail']})" for p in pods if not p["refused"])
        for workload in workloads:
            if workload["service"] == service:
                workload["pods"] = [p for p in pods if p["version"] == workload["version"]]
    edges = [e for e in ctx.target.observed_edges(count) if e["destination"] in chosen]
    if not edges:
        raise MeasurementFailed(f"no hop into {', '.join(chosen)} was observed in {count} requests")
    violations.extend(_edge_problems(model, edges))
    status = "violated" if violations else "pass"
    summary = (f"{status}: {len(workloads)} workloads of {', '.join(chosen)}, "
               f"{sum(len(w.get('pods', [])) for w in workloads)} pods tried with plaintext, "
               f"{len(edges)} hops observed" + (f"; {'; '.join(violations)}" if violations else
                                                 ": all STRICT, plaintext refused, callers' identities verified"))
    log.info("mtls_enforced: %s", summary)
    return {"status": status, "summary": summary, "violations": violations, "workloads": workloads, "edges": edges}


def _edge_problems(model: MeshModel, edges: list[dict[str, Any]]) -> list[str]:
    problems = []
    for edge in edges:
        source, principal = edge["source"], edge["principal"]
        hop = f"hop {source} -> {edge['destination']}"
        if principal is None:
            problems.append(f"{hop} carried no client certificate ({edge['requests']} requests)")
        elif source == INGRESS:
            domain = model.trust_domains.local
            if not str(principal).startswith(f"spiffe://{domain}/"):
                problems.append(f"{hop} presented {principal}, outside the trust domain {domain}")
        elif source in model.services and principal != model.services[source].spiffe_id:
            problems.append(f"{hop} presented {principal}, expected {model.services[source].spiffe_id}")
    return problems


def _names(services: Any) -> list[str]:
    if not isinstance(services, list) or not services:
        checks.fail("services", "a non-empty list of service names", services)
    return [checks.name(f"services[{i}]", s) for i, s in enumerate(services)]
