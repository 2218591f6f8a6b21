"""Argo Rollouts (``argoproj.io/v1alpha1`` ``Rollout``) as workloads, in the state the mesh directory writes.

``loader`` asks ``treatment`` how a document of the ``argoproj.io`` group is taken (a ``Rollout`` is read and
checked against ``RolloutSpec``; ``Experiment`` is warned, not run; the group's other kinds, such as
``AnalysisTemplate`` or Argo CD's ``Application``, are ignored).  ``build.build_model`` calls ``expand`` before
``manifests.workloads``: each Rollout becomes the pod sets Argo's controller runs for it, as
``manifests.PodSet`` documents of kind ``Rollout`` that ``manifests`` turns into versions like a Deployment's.

The rollout controller's steps are not run: the weights are those the directory's VirtualService holds, and the
pods are those Argo runs at that weight.  With a canary split (``canaryService``/``stableService``, or the
subsets of ``trafficRouting.istio.destinationRule``) the template runs twice: as the stable ReplicaSet
(``replicas`` pods; with ``dynamicStableScale`` its share of them) and as the canary one (its share of
``replicas``, rounded up, as Argo scales it), labelled ``rollouts-pod-template-hash: stable`` / ``canary``; the
Services' selectors and the subsets' labels get that label as Argo's controller sets them.  A canary at weight 0
has no pods of its own in Argo (both Services and subsets reach the stable ones): its subset then selects the
stable pods, while a canary Service, which the sandbox cannot give pods another Service runs, gets one pod of
its own.  A blue-green Rollout runs its active pods and, with a ``previewService``, its preview pods
(``previewReplicaCount``, else ``replicas``): the state before promotion.  ``workloadRef`` takes a Deployment's
template (and selector) from the directory; that Deployment itself is not run.  Problems are one line each.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, model_validator

from chaosmesh_qa.mesh import manifests, schema
from chaosmesh_qa.mesh.documents import Document
from chaosmesh_qa.mesh.values import Name, show

KIND = "Rollout"
GROUP = "argoproj.io"
API_VERSION = "argoproj.io/v1alpha1"
HASH_LABEL = "rollouts-pod-template-hash"  # what Argo's controller adds to its ReplicaSets' pods and selectors
_WARNED = {"Experiment": "not run: the sandbox runs a Rollout's stable and canary pods only, not an "
                         "Experiment's ReplicaSets"}


class WorkloadRef(schema.Spec):
    api_version: str = ""
    kind: str
    name: Name
    scale_down: Literal["never", "onsuccess", "progressively"] | None = None


class VirtualServiceRef(schema.Spec):
    name: Annotated[str, Field(min_length=1, max_length=253)]  # "name", or "name.namespace"
    routes: list[str] = Field(default_factory=list)  # none: the VirtualService's only HTTP route


class DestinationRuleRef(schema.Spec):
    name: Annotated[str, Field(min_length=1, max_length=253)]
    canary_subset_name: Name
    stable_subset_name: Name


class IstioRouting(schema.Spec):
    virtual_service: VirtualServiceRef | None = None
    virtual_services: list[VirtualServiceRef] = Field(default_factory=list)
    destination_rule: DestinationRuleRef | None = None


class TrafficRouting(schema.Spec):
    istio: IstioRouting | None = None  # other providers (nginx, alb, smi, ...) shape no mesh traffic: not read


class CanaryStrategy(schema.Spec):
    canary_service: Name | None = None
    stable_service: Name | None = None
    traffic_routing: TrafficRouting | None = None
    dynamic_stable_scale: bool = False


class BlueGreenStrategy(schema.Spec):
    active_service: Name
    preview_service: Name | None = None
    preview_replica_count: Annotated[int, Field(ge=0, le=20)] | None = None


class Strategy(schema.Spec):
    canary: CanaryStrategy | None = None
    blue_green: BlueGreenStrategy | None = None

    @model_validator(mode="after")
    def _one(self) -> Strategy:
        if (self.canary is None) == (self.blue_green is None):
            raise ValueError("exactly one of canary and blueGreen is needed (as Argo requires)")
        return self


class RolloutSpec(schema.Spec):
    replicas: Annotated[int, Field(ge=0, le=20)] = 1
    selector: manifests.Selector | None = None  # with workloadRef: the Deployment's, when not given
    template: manifests.PodTemplate | None = None
    workload_ref: WorkloadRef | None = None
    strategy: Strategy

    @model_validator(mode="after")
    def _template_or_ref(self) -> RolloutSpec:
        if self.template is not None and self.workload_ref is not None:
            raise ValueError("template: must be empty with workloadRef (as Argo requires)")
        if self.template is None and self.workload_ref is None:
            raise ValueError("template: required (or workloadRef)")
        if self.workload_ref is None and self.selector is None:
            raise ValueError("selector: required (as Argo requires)")
        return self


def treatment(kind: object, api_version: object) -> str | None:
    """How ``loader`` takes a document: ``"read"`` (a Rollout), ``"warned"``, ``"ignored"``, or None (not of
    Argo's API group)."""
    if kind == KIND:
        return "read"  # a wrong apiVersion is then named as such
    if not isinstance(api_version, str) or api_version.rpartition("/")[0] != GROUP:
        return None
    return "warned" if kind in _WARNED else "ignored"


def warning(kind: str) -> str:
    return _WARNED[kind]


def problem_in_version(api_version: object) -> str | None:
    if api_version != API_VERSION:
        return f"apiVersion: {show(api_version)} is not a {KIND} API version (expected {API_VERSION})"
    return None


class _Rollout:
    """One Rollout resolved against the directory: its template, and what its controller changes."""

    def __init__(self, doc: Document, documents: list[Document], changed: dict[int, Document | None],
                 problems: list[str], warnings: list[str]) -> None:
        self.doc, self.documents, self.changed = doc, documents, changed
        self.problems, self.warnings = problems, warnings
        self.spec: RolloutSpec = doc.spec  # type: ignore[assignment]
        self.ok = True

    def fail(self, field: str, reason: str) -> None:
        self.problems.append(f"{self.doc.where}: {field}: {reason}")
        self.ok = False

    def find(self, kind: str, reference: str) -> Document | None:
        """A document of ``kind`` named ``name`` or ``name.namespace`` (default: the Rollout's namespace)."""
        name, _, namespace = reference.partition(".")
        namespace = namespace or self.doc.namespace
        return next((d for d in self.documents if d.kind == kind and d.name == name and d.namespace == namespace),
                    None)

    def pod_template(self) -> tuple[manifests.PodTemplate, manifests.Selector] | None:
        ref = self.spec.workload_ref
        if ref is None:
            assert self.spec.template is not None and self.spec.selector is not None  # RolloutSpec checked both
            template, selector = self.spec.template, self.spec.selector
        else:
            if (ref.api_version, ref.kind) != ("apps/v1", "Deployment"):
                self.fail("spec.workloadRef", f"apiVersion {show(ref.api_version)}, kind {show(ref.kind)}: the "
                          "sandbox reads the template of a Deployment (apps/v1) of the mesh directory only")
                return None
            source = self.find("Deployment", ref.name)
            if source is None:
                self.fail("spec.workloadRef.name", f"no Deployment {ref.name!r} in namespace "
                          f"{self.doc.namespace!r} of the mesh directory")
                return None
            self.changed[id(source)] = None  # its template is the Rollout's; its own pods are not run
            deployment: manifests.WorkloadSpec = source.spec  # type: ignore[assignment]
            if deployment.replicas and ref.scale_down in (None, "never"):
                self.warnings.append(
                    f"{source.where}: spec.replicas: {deployment.replicas} pods of its own would keep running next "
                    f"to Rollout/{self.doc.name}'s (workloadRef scaleDown: {ref.scale_down or 'never'}); the "
                    "sandbox runs only the Rollout's")
            template, selector = deployment.template, self.spec.selector or deployment.selector
        labels = template.metadata.labels
        if not selector.match_labels or any(labels.get(k) != v for k, v in selector.match_labels.items()):
            self.fail("spec.selector.matchLabels", "does not match the pod template's labels (Argo refuses such a "
                      "Rollout)")
            return None
        return template, selector

    def canary_share(self) -> float:
        """The canary's share of the weight (0-100) in the routes of the VirtualServices the Rollout names."""
        canary = self.spec.strategy.canary
        istio = canary.traffic_routing.istio if canary and canary.traffic_routing else None
        if canary is None or istio is None:
            return 0.0
        base = "spec.strategy.canary.trafficRouting.istio."
        refs = [*([(base + "virtualService", istio.virtual_service)] if istio.virtual_service else []),
                *((f"{base}virtualServices[{i}]", ref) for i, ref in enumerate(istio.virtual_services))]
        rule = istio.destination_rule
        if rule is None and not (canary.canary_service and canary.stable_service):
            self.fail("spec.strategy.canary", "canaryService and stableService are required with "
                      "trafficRouting.istio and no destinationRule (as Argo requires)")
        if not refs:
            self.fail("spec.strategy.canary.trafficRouting.istio", "virtualService or virtualServices: required")
        shares = [0.0]
        for field, ref in refs:
            found = self.find("VirtualService", ref.name)
            if found is None:
                self.fail(f"{field}.name", f"no VirtualService {ref.name!r} in the mesh directory")
                continue
            shares += self._route_shares(found, ref, field, canary, rule)
        return max(shares)

    def _route_shares(self, found: Document, ref: VirtualServiceRef, field: str, canary: CanaryStrategy,
                      rule: DestinationRuleRef | None) -> list[float]:
        http: list[schema.HTTPRoute] = found.spec.http  # type: ignore[attr-defined]
        if ref.routes:
            chosen = []
            for name in ref.routes:
                route = next((r for r in http if r.name == name), None)
                if route is None:
                    self.fail(f"{field}.routes", f"{found.where} has no HTTP route named {name!r}")
                else:
                    chosen.append(route)
        elif len(http) == 1:
            chosen = http
        else:
            self.fail(f"{field}.routes", f"required: {found.where} has {len(http)} HTTP routes (Argo edits the "
                      "only one when routes is omitted)")
            return []
        shares = []
        for route in chosen:
            destinations = route.route or []
            if rule is not None:
                roles = {"canary": rule.canary_subset_name, "stable": rule.stable_subset_name}
                picks = {role: [d for d in destinations if d.destination.subset == subset]
                         for role, subset in roles.items()}
                named = {role: f"subset {subset!r}" for role, subset in roles.items()}
            else:
                roles = {"canary": canary.canary_service or "", "stable": canary.stable_service or ""}
                picks = {role: [d for d in destinations if d.destination.host.partition(".")[0] == service]
                         for role, service in roles.items()}
                named = {role: f"Service {service!r}" for role, service in roles.items()}
            missing = [role for role, found_ in picks.items() if not found_]
            if missing:
                self.fail(f"{field}.routes", f"route {route.name or '(unnamed)'!r} of {found.where} has no "
                          f"destination for the {missing[0]} {named[missing[0]]} (Argo refuses the Rollout)")
                continue
            total = sum(d.weight or 0 for d in destinations)
            if total:
                shares.append(100.0 * sum(d.weight or 0 for d in picks["canary"]) / total)
        return shares

    def manage_service(self, name: str, field: str, role: str, labels: dict[str, str]) -> None:
        """The Service named at ``field`` gets ``role``'s hash in its selector, as Argo's controller sets it."""
        found = self.find("Service", name)
        if found is None:
            self.fail(field, f"no Service {name!r} in namespace {self.doc.namespace!r} of the mesh directory")
            return
        spec: manifests.ServiceSpec = found.spec  # type: ignore[assignment]
        selector = dict(spec.selector or {})
        wrong = sorted(k for k, v in selector.items() if k != HASH_LABEL and labels.get(k) != v)
        if wrong:
            self.fail(field, f"{found.where}: spec.selector: {wrong[0]!r} does not match the Rollout's pod labels "
                      "(Argo refuses the Rollout)")
            return
        self.changed[id(found)] = _replaced(found, spec.model_copy(update={"selector": {**selector, HASH_LABEL: role}}))

    def manage_subsets(self, rule: DestinationRuleRef, canary_runs: bool) -> None:
        """The DestinationRule's stable and canary subsets get the ReplicaSets' hashes, as Argo's controller sets
        them; without canary pods, both select the stable ones."""
        field = "spec.strategy.canary.trafficRouting.istio.destinationRule"
        found = self.find("DestinationRule", rule.name)
        if found is None:
            self.fail(f"{field}.name", f"no DestinationRule {rule.name!r} in the mesh directory")
            return
        spec: schema.DestinationRuleSpec = found.spec  # type: ignore[assignment]
        hashes = {rule.stable_subset_name: "stable", rule.canary_subset_name: "canary" if canary_runs else "stable"}
        for subset, key in ((rule.stable_subset_name, "stableSubsetName"), (rule.canary_subset_name,
                                                                            "canarySubsetName")):
            if not any(s.name == subset for s in spec.subsets):
                self.fail(f"{field}.{key}", f"{found.where} has no subset {subset!r}")
        if self.ok:
            subsets = [s.model_copy(update={"labels": {**s.labels, HASH_LABEL: hashes[s.name]}})
                       if s.name in hashes else s for s in spec.subsets]
            self.changed[id(found)] = _replaced(found, spec.model_copy(update={"subsets": subsets}))

    def pod_sets(self) -> list[Document]:
        """The ReplicaSets Argo's controller runs for this Rollout, at the directory's weights."""
        resolved = self.pod_template()
        strategy = self.spec.strategy
        share = self.canary_share()
        if resolved is None or not self.ok:
            return []
        template, selector = resolved
        labels = template.metadata.labels
        replicas = self.spec.replicas
        sets: dict[str, int] = {"stable": replicas}
        if strategy.canary is not None:
            canary = strategy.canary
            extra = math.ceil(replicas * share / 100)
            if canary.dynamic_stable_scale:
                sets["stable"] = math.ceil(replicas * (100 - share) / 100)
            if canary.canary_service:
                extra = max(extra, 1)  # a Service of its own: the sandbox runs no pod under two Services
                self.manage_service(canary.canary_service, "spec.strategy.canary.canaryService", "canary", labels)
            if canary.stable_service:
                self.manage_service(canary.stable_service, "spec.strategy.canary.stableService", "stable", labels)
            rule = canary.traffic_routing.istio.destination_rule if canary.traffic_routing and \
                canary.traffic_routing.istio else None
            if rule is not None:
                self.manage_subsets(rule, extra > 0)
            if extra:
                sets["canary"] = extra
        else:
            green = strategy.blue_green
            assert green is not None  # Strategy checked one of the two
            sets = {"active": replicas}
            self.manage_service(green.active_service, "spec.strategy.blueGreen.activeService", "active", labels)
            if green.preview_service:
                if green.preview_service == green.active_service:
                    self.fail("spec.strategy.blueGreen.previewService", "the same Service as activeService (Argo "
                              "requires two)")
                self.manage_service(green.preview_service, "spec.strategy.blueGreen.previewService", "preview",
                                    labels)
                sets["preview"] = replicas if green.preview_replica_count is None else green.preview_replica_count
        if strategy.canary is not None and strategy.canary.canary_service and \
                strategy.canary.canary_service == strategy.canary.stable_service:
            self.fail("spec.strategy.canary.stableService", "the same Service as canaryService (Argo requires two)")
        if not self.ok:
            return []
        return [Document(self.doc.file, KIND, self.doc.name, self.doc.namespace, manifests.PodSet(
            replicas=count, selector=selector.model_copy(update={"match_labels": {**selector.match_labels,
                                                                                  HASH_LABEL: role}}),
            template=template.model_copy(update={"metadata": template.metadata.model_copy(
                update={"labels": {**labels, HASH_LABEL: role}})}),
            version=role if len(sets) > 1 else "")) for role, count in sets.items()]


def _replaced(doc: Document, spec: schema.Spec) -> Document:
    return Document(doc.file, doc.kind, doc.name, doc.namespace, spec)


def expand(documents: list[Document], problems: list[str], warnings: list[str]) -> list[Document]:
    """``documents`` with each Rollout replaced by its pod sets (``manifests.PodSet``), the Services and
    DestinationRule subsets it manages as its controller sets them, and a ``workloadRef``'s Deployment left out."""
    changed: dict[int, Document | None] = {}
    sets: dict[int, list[Document]] = {}
    for doc in documents:
        if doc.kind == KIND:
            sets[id(doc)] = _Rollout(doc, documents, changed, problems, warnings).pod_sets()
    if not sets:
        return documents
    result: list[Document] = []
    for doc in documents:
        if id(doc) in sets:
            result += sets[id(doc)]
        elif id(doc) not in changed:
            result.append(doc)
        elif (replacement := changed[id(doc)]) is not None:
            result.append(replacement)
    return result
