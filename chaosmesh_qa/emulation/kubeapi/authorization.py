"""AuthorizationPolicies as istiod reads them: admitted by its webhook's rules, then every stored one in force.

``apply.Applier`` calls ``admit`` before it stores a created, updated or patched AuthorizationPolicy, and
``evaluate`` over every stored one (the team's, the Kubernetes target's if it ever wrote one, and the mesh
directory's own, which ``server`` seeds read-only) after each change and whenever the pods' labels change; it hands
the policies to ``Sandbox.set_authorization_policies``.  No object is recognised by its shape or its labels.

* **One parser.**  An API object becomes a mesh-directory document (``mesh.loader.validate_document``, as
  ``targets.kubernetes.declared`` turns the objects it reads into documents) and then ``AuthzPolicy`` by
  ``mesh.authz.authorization_policies``, with the mesh's trust domains (istiod's ``istio`` ConfigMap): the very
  code that reads a mesh directory's policies, so the API and the YAML cannot disagree.  Only what istiod reads
  is kept of the metadata (name, namespace, labels, annotations); a missing ``spec`` is Istio's empty one (ALLOW
  nothing: every request to the selected workloads is denied).
* **The webhook.**  What that schema refuses, istiod's validating webhook refuses here: 400 with
  ``admission webhook "validation.istio.io" denied the request: configuration is invalid: <field>: <reason>``
  on one line, and the object is not stored.  (The schema is the sandbox's, not istiod's Go validation word for
  word; a few values istiod accepts may be refused, never the reverse for the fields the sandbox evaluates.)
* **What the sandbox cannot evaluate** (the parser's warnings: IP blocks, JWT principals and claims, ports,
  fields it does not know) is listed per policy: ``evaluate`` returns it, and the applier puts it in the call
  log and on the object's status, as it does NetworkPolicies' limits.  The rule then does what
  ``mesh.authz`` says: an ALLOW rule that needs such a condition is left out, a DENY rule ignores the condition.
* ``selected`` says which pods (and whether the ingress gateway) a policy reaches, as
  ``MeshModel.authz_for`` and ``mesh.authz.enforced_at_ingress`` select: its namespace's pods, or every pod for
  the root namespace, by selector on the pods' current labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaosmesh_qa.emulation.kubeapi.status import ApiError
from chaosmesh_qa.mesh import yamlfiles
from chaosmesh_qa.mesh.authz import authorization_policies
from chaosmesh_qa.mesh.documents import Document
from chaosmesh_qa.mesh.ingressgateway import IngressGateway
from chaosmesh_qa.mesh.loader import validate_document
from chaosmesh_qa.mesh.meshconfig import TrustDomains
from chaosmesh_qa.mesh.model import ROOT_NAMESPACE, selects
from chaosmesh_qa.mesh.security_model import AuthzPolicy

KIND = "AuthorizationPolicy"
API_VERSION = "security.istio.io/v1"
SOURCE = "kube-api"  # the "file" of an API object's document: messages read "kube-api: AuthorizationPolicy/NAME: ..."
WEBHOOK = 'admission webhook "validation.istio.io" denied the request: configuration is invalid: '
META_READ = ("name", "namespace", "labels", "annotations")  # what istiod reads of an object's metadata


@dataclass(frozen=True)
class Evaluated:
    """Every stored AuthorizationPolicy as the sandbox enforces it."""

    policies: tuple[AuthzPolicy, ...] = ()
    keys: tuple[str, ...] = ()  # "namespace/name" of each stored object in force (left out: see not_realised)
    not_realised: dict[str, list[str]] = field(default_factory=dict)  # key -> what the sandbox cannot evaluate


def admit(body: Any, namespace: str) -> None:
    """istiod's validating webhook for a create or update (a patch: the merged object); raises its 400."""
    if not isinstance(body, dict):
        return  # the store answers 400: not an object
    meta = _metadata(body)
    if not meta.get("name") and not meta.get("generateName"):
        return  # the store answers 422: name or generateName is required
    problems: list[str] = []
    _document(body, namespace, problems, [], name=str(meta.get("name") or f"{meta['generateName']}x"))
    if problems:
        raise ApiError(400, "BadRequest", WEBHOOK + "; ".join(problems))


def evaluate(objects: list[dict[str, Any]], domains: TrustDomains) -> Evaluated:
    """Every stored object, parsed as a mesh directory's policies are; one that does not parse (none should: each
    was admitted, or loaded with the mesh) is left out, and says why."""
    policies: list[AuthzPolicy] = []
    keys: list[str] = []
    not_realised: dict[str, list[str]] = {}
    for obj in objects:
        meta = obj["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        problems: list[str] = []
        warnings: list[str] = []
        document = _document(obj, meta["namespace"], problems, warnings)
        if document is None:
            not_realised[key] = [f"not applied: {problem}" for problem in problems]
            continue
        parsed = authorization_policies([document], warnings, domains)
        if parsed:  # the parser leaves out what the sandbox does not enforce (e.g. CUSTOM, AUDIT), with a warning
            policies += parsed
            keys.append(key)
        not_realised[key] = [_relative(w, _where(meta["name"])) for w in warnings]
    return Evaluated(tuple(policies), tuple(keys), not_realised)


def selected(policy: AuthzPolicy, pods: Mapping[str, tuple[str, Mapping[str, str]]],
             gateway: IngressGateway, root_namespace: str = ROOT_NAMESPACE) -> list[str]:
    """The pods (name -> (namespace, current labels)) a policy reaches, and the ingress gateway (by its name) if
    it enforces it: its own namespace's workloads, or every namespace's for the root namespace, narrowed by its
    selector, as istiod selects them."""
    def chosen(labels: Mapping[str, str]) -> bool:
        return not policy.selector or selects(policy.selector, dict(labels))

    found = sorted(name for name, (namespace, labels) in pods.items()
                   if policy.namespace in (root_namespace, namespace) and chosen(labels))
    reaches_gateway = policy.namespace in (root_namespace, gateway.namespace) and chosen(gateway.labels)
    return [*found, gateway.name] if reaches_gateway else found


def _document(obj: dict[str, Any], namespace: str, problems: list[str], warnings: list[str],
              name: str | None = None) -> Document | None:
    """The API object as a mesh directory's document: problems (refusals, relative to the object) or the
    ``Document``, its warnings appended as the loader words them."""
    meta = _metadata(obj)
    kept = {key: meta[key] for key in META_READ if meta.get(key) is not None}
    kept["namespace"] = namespace
    if name is not None:
        kept["name"] = name
    spec = obj.get("spec")
    raw = {"apiVersion": obj.get("apiVersion") or API_VERSION, "kind": KIND, "metadata": kept,
           "spec": {} if spec is None else spec}
    found: list[str] = []
    document = validate_document(Path(SOURCE), yamlfiles.Document(0, 0, raw), found, warnings)
    problems += [" ".join(_relative(p, _where(kept.get("name"))).split()) for p in found]
    return document


def _metadata(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _where(name: Any) -> str:
    return f"{SOURCE}: {KIND}/{name}"


def _relative(message: str, where: str) -> str:
    """A loader message without the document's place (``kube-api: AuthorizationPolicy/NAME: ``)."""
    return message.removeprefix(f"{where}: ")
