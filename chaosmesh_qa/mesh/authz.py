"""AuthorizationPolicy documents to ``AuthzPolicy``: what the sandbox enforces, and what it says it cannot.

``loader`` validates an AuthorizationPolicy with ``AuthorizationPolicySpec`` (``KIND``), checked as istiod's webhook
checks it; ``build.build_model`` calls ``authorization_policies``.  Its actions are Istio's: ALLOW and DENY are
enforced; AUDIT only asks for logging and never allows or denies, so it is left out (with a warning); CUSTOM asks an
external authorizer (its ``provider``), which Envoy consults first, before DENY and ALLOW: the sandbox has none, so a
CUSTOM policy is left out too, as if its provider allowed every request (DENY and ALLOW policies still decide), and
its warning says a verdict cannot tell what the provider would decide.  (Failing closed, denying every request its
rules match, would break the very traffic the verdicts measure for a provider that allows it in production, and a
CUSTOM policy, unlike an ALLOW one, denies nothing else.)  Principals, namespaces, paths, methods and
hosts (and their ``not`` forms) keep Istio's string matching (exact, ``prefix*``, ``*suffix``,
``*`` = present); ``rules[].when`` is evaluated for ``request.headers[<name>]``,
``source.principal`` and ``source.namespace``.  A condition the sandbox cannot evaluate (IP
blocks, JWT principals and claims, ports, SNI...) is never silently dropped: as Istio does for a
rule it cannot apply, an ALLOW rule that needs one is left out (it allows nothing: fail closed)
and a DENY rule ignores it (it denies every request its other conditions match), each with a
warning saying so.  ``selection_warnings`` names policies that select no workload, and ones that
select the ingress gateway (``enforced_at_ingress`` gives those the sandbox's ingress enforces).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, model_validator

from chaosmesh_qa.mesh import schema
from chaosmesh_qa.mesh.documents import Document
from chaosmesh_qa.mesh.meshconfig import TrustDomains
from chaosmesh_qa.mesh.model import MeshModel, selects
from chaosmesh_qa.mesh.security_model import AuthzCondition, AuthzOperation, AuthzPolicy, AuthzRule, AuthzSource
from chaosmesh_qa.mesh.values import HeaderName, Namespace, Text

_HEADER_KEY = re.compile(r"request\.headers\[([!#$%&'*+\-.^_`|~0-9A-Za-z]+)\]", re.ASCII)
EVALUATED_KEYS = ("request.headers[<name>]", "source.principal", "source.namespace")
# fields Istio knows that the sandbox does not evaluate (the sandbox has no client IPs, JWTs or ports to test)
_UNEVALUATED_SOURCE = ("ip_blocks", "not_ip_blocks", "remote_ip_blocks", "not_remote_ip_blocks",
                       "request_principals", "not_request_principals")
_UNEVALUATED_OPERATION = ("ports", "not_ports")
_NOT_WITH_CUSTOM = ("principals", "not_principals", "namespaces", "not_namespaces", "request_principals",
                    "not_request_principals")  # istiod's webhook refuses these in a CUSTOM policy's rules


AuthzValue = Annotated[Text, Field(min_length=1)]  # exact, 'prefix*', '*suffix' or '*' (present), as Istio


class Source(schema.Spec):
    principals: list[AuthzValue] = Field(default_factory=list)
    namespaces: list[Namespace] = Field(default_factory=list)  # a name, '*', or one '*' at either end
    not_principals: list[AuthzValue] = Field(default_factory=list)
    not_namespaces: list[Namespace] = Field(default_factory=list)
    # known to Istio, not evaluated here: ``_policy`` says what the rule does instead
    ip_blocks: list[Text] = Field(default_factory=list)
    not_ip_blocks: list[Text] = Field(default_factory=list)
    remote_ip_blocks: list[Text] = Field(default_factory=list)
    not_remote_ip_blocks: list[Text] = Field(default_factory=list)
    request_principals: list[Text] = Field(default_factory=list)
    not_request_principals: list[Text] = Field(default_factory=list)


AuthzPath = Annotated[Text, Field(min_length=1, pattern=r"^[^ ]*$")]


class Operation(schema.Spec):
    paths: list[AuthzPath] = Field(default_factory=list)
    methods: list[HeaderName] = Field(default_factory=list)
    hosts: list[AuthzValue] = Field(default_factory=list)
    not_paths: list[AuthzPath] = Field(default_factory=list)
    not_methods: list[HeaderName] = Field(default_factory=list)
    not_hosts: list[AuthzValue] = Field(default_factory=list)
    ports: list[Text] = Field(default_factory=list)  # not evaluated (see ``_policy``)
    not_ports: list[Text] = Field(default_factory=list)


class RuleFrom(schema.Spec):
    source: Source


class RuleTo(schema.Spec):
    operation: Operation


class Condition(schema.Spec):
    key: AuthzValue
    values: list[AuthzValue] = Field(default_factory=list)
    not_values: list[AuthzValue] = Field(default_factory=list)

    @model_validator(mode="after")
    def _some_value(self) -> Condition:
        if not self.values and not self.not_values:
            raise ValueError("a condition needs values or notValues (as Istio requires)")
        return self


class Rule(schema.Spec):
    from_: list[RuleFrom] = Field(default_factory=list, alias="from")
    to: list[RuleTo] = Field(default_factory=list)
    when: list[Condition] = Field(default_factory=list)


class Provider(schema.Spec):
    name: Annotated[Text, Field(min_length=1)]


class AuthorizationPolicySpec(schema.Spec):
    selector: schema.WorkloadSelector | None = None
    action: Literal["ALLOW", "DENY", "CUSTOM", "AUDIT"] = "ALLOW"
    provider: Provider | None = None  # CUSTOM: the external authorizer (meshConfig.extensionProviders[].name)
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _as_istiod_checks(self) -> AuthorizationPolicySpec:
        if self.provider is not None and self.action != "CUSTOM":
            raise ValueError(f"provider: only with action CUSTOM (as in Istio), not {self.action}")
        if self.action != "CUSTOM":
            return self
        if not self.rules:
            raise ValueError("rules: a CUSTOM policy without rules never applies (istiod refuses it); an empty rule "
                             "{} sends every request to the provider")
        if self.provider is None:
            raise ValueError("provider.name: required with action CUSTOM (as in Istio)")
        for i, rule in enumerate(self.rules):
            for j, entry in enumerate(rule.from_):
                used = [f for f in _NOT_WITH_CUSTOM if getattr(entry.source, f)]
                if used:
                    raise ValueError(f"rules[{i}].from[{j}].source.{_camel(used[0])}: not supported with action "
                                     "CUSTOM (istiod refuses it)")
            for k, cond in enumerate(rule.when):
                if cond.key in ("source.namespace", "source.principal", "source.serviceAccount",
                                "source.trustDomain") or cond.key.startswith("request.auth."):
                    raise ValueError(f"rules[{i}].when[{k}].key: {cond.key!r} is not supported with action CUSTOM "
                                     "(istiod refuses it)")
        return self


KIND = ("AuthorizationPolicy", ("security.istio.io/v1", "security.istio.io/v1beta1"), AuthorizationPolicySpec)


def authorization_policies(documents: list[Document], warnings: list[str],
                           domains: TrustDomains | None = None) -> tuple[AuthzPolicy, ...]:
    """The ALLOW and DENY AuthorizationPolicies, principals expanded for the mesh's trust domains as istiod does;
    a CUSTOM or AUDIT one is left out with a warning saying what that means."""
    found = []
    for doc in (d for d in documents if d.kind == "AuthorizationPolicy"):
        spec: AuthorizationPolicySpec = doc.spec  # type: ignore[assignment]
        if spec.action == "CUSTOM":
            provider = spec.provider.name if spec.provider else ""
            warnings.append(f"{doc.where}: spec.action: CUSTOM asks the external authorizer {provider!r} first, and "
                            "the sandbox has none: the policy is not applied, as if it allowed every request its "
                            "rules match (DENY and ALLOW policies still decide); a verdict cannot tell what "
                            f"{provider!r} would decide")
        elif spec.action == "AUDIT":
            warnings.append(f"{doc.where}: spec.action: AUDIT only marks requests for audit logging and never allows "
                            "or denies one: the sandbox does not log them")
        else:
            found.append(_policy(doc, warnings, domains or TrustDomains()))
    return tuple(found)


def _policy(doc: Document, warnings: list[str], domains: TrustDomains) -> AuthzPolicy:
    spec: AuthorizationPolicySpec = doc.spec  # type: ignore[assignment]
    rules: list[AuthzRule] = []
    for i, rule in enumerate(spec.rules):
        where = f"{doc.where}: spec.rules[{i}]"
        unevaluated = _unevaluated(rule, where)
        conditions = []
        for k, cond in enumerate(rule.when):
            key = _condition_key(cond.key)
            if key is None:
                unevaluated.append(f"{where}.when[{k}].key: {cond.key!r}")
            else:
                values, not_values = tuple(cond.values), tuple(cond.not_values)
                if key == "source.principal":
                    values, not_values = domains.principals(values), domains.principals(not_values)
                conditions.append(AuthzCondition(key, values, not_values))
        if unevaluated and spec.action == "ALLOW":
            warnings.extend(f"{field} cannot be evaluated by the sandbox (it evaluates "
                            f"{', '.join(EVALUATED_KEYS)}, principals, namespaces, paths, methods and hosts): "
                            "this ALLOW rule is left out, so requests only it would allow are denied (fail closed)"
                            for field in unevaluated)
            continue
        warnings.extend(f"{field} cannot be evaluated by the sandbox: this DENY rule ignores that condition "
                        "and denies every request its other conditions match (fail closed)"
                        for field in unevaluated)
        rules.append(AuthzRule(
            sources=tuple(_source(f.source, domains) for f in rule.from_),
            operations=tuple(_operation(t.operation) for t in rule.to),
            conditions=tuple(conditions),
        ))
    selector = dict(spec.selector.match_labels) if spec.selector and spec.selector.match_labels else None
    action: Literal["ALLOW", "DENY"] = "DENY" if spec.action == "DENY" else "ALLOW"
    return AuthzPolicy(doc.name, doc.namespace, selector, action, tuple(rules))


def _unevaluated(rule: Rule, where: str) -> list[str]:
    found = []
    for j, entry in enumerate(rule.from_):
        for name in _UNEVALUATED_SOURCE:
            if getattr(entry.source, name):
                found.append(f"{where}.from[{j}].source.{_camel(name)}")
    for j, target in enumerate(rule.to):
        for name in _UNEVALUATED_OPERATION:
            if getattr(target.operation, name):
                found.append(f"{where}.to[{j}].operation.{_camel(name)}")
    return found


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _condition_key(key: str) -> str | None:
    """The evaluated form of a ``when`` key (a header name lower-cased), or None."""
    if key in ("source.principal", "source.namespace"):
        return key
    match = _HEADER_KEY.fullmatch(key)
    return f"request.headers[{match.group(1).lower()}]" if match else None


def _source(source: Source, domains: TrustDomains) -> AuthzSource:
    return AuthzSource(domains.principals(tuple(source.principals)), tuple(source.namespaces),
                       domains.principals(tuple(source.not_principals)), tuple(source.not_namespaces))


def _operation(op: Operation) -> AuthzOperation:
    return AuthzOperation(tuple(op.paths), tuple(op.methods), tuple(op.hosts),
                          tuple(op.not_paths), tuple(op.not_methods), tuple(op.not_hosts))


def enforced_at_ingress(model: MeshModel) -> list[AuthzPolicy]:
    """The policies Istio would apply to its ingress gateway: its namespace's and the root namespace's whose
    selector is absent or matches the gateway's labels."""
    gateway = model.ingress_gateway
    return [p for p in model.authz if p.namespace in (gateway.namespace, model.root_namespace)
            and (not p.selector or selects(p.selector, gateway.labels))]


def selection_warnings(model: MeshModel, documents: list[Document], warnings: list[str]) -> None:
    """A policy with a selector that picks no workload has no effect: say so, and say when it is the
    ingress gateway that it picks."""
    for doc in documents:
        if doc.kind not in ("AuthorizationPolicy", "PeerAuthentication"):
            continue
        selector_spec = getattr(doc.spec, "selector", None)
        selector = dict(selector_spec.match_labels) if selector_spec and selector_spec.match_labels else None
        if not selector:
            continue
        gateway = model.ingress_gateway
        picks_ingress = selects(selector, gateway.labels)
        picks_workload = any(
            (doc.namespace in (model.root_namespace, svc.namespace) if doc.kind == "AuthorizationPolicy"
             else doc.namespace == svc.namespace)
            and selects(selector, model.workload_labels(name, v.name))
            for name, svc in model.services.items() for v in svc.versions
        )
        if picks_workload:
            continue
        if picks_ingress and doc.namespace not in (gateway.namespace, model.root_namespace):
            warnings.append(f"{doc.where}: spec.selector: selects the ingress gateway's labels, but the gateway "
                            f"runs in namespace {gateway.namespace!r}, not {doc.namespace!r}: this policy applies "
                            "to no workload and has no effect")
        elif picks_ingress and doc.kind == "PeerAuthentication":
            warnings.append(f"{doc.where}: spec.selector: selects the ingress gateway, which takes plaintext "
                            "from outside the mesh and has no inbound mTLS to set: this policy has no effect")
        elif not picks_ingress:
            warnings.append(f"{doc.where}: spec.selector: {selector} matches no workload of the mesh "
                            f"(in namespace {doc.namespace!r}): this policy has no effect")
