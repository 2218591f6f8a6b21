"""NetworkPolicies as Kubernetes defines them: which *new* connections between pods a CNI lets open.

Pure (no I/O): ``apply.Applier`` calls ``admit`` on every create, update and patch of a NetworkPolicy (what the
API server decodes, defaults and validates: 400 for a body that does not decode, 422 for one that does not
validate), then, after every change of the NetworkPolicies or of the pods, ``PolicySet.verdict`` for each
connection the sandbox's mesh makes, and ``sandbox_limits`` for what the sandbox cannot carry out.

The semantics (the networking.k8s.io/v1 API reference):

* a pod is *isolated for ingress* when a policy of its namespace selects it (``podSelector``; ``{}`` selects
  every pod of the namespace) with ``Ingress`` among its ``policyTypes``, and *isolated for egress* likewise
  with ``Egress``; ``policyTypes`` defaults to ``[Ingress]``, plus ``Egress`` when the spec has egress rules;
* a connection needs both: egress allowed at the source and ingress allowed at the destination.  A side that
  is not isolated allows everything; an isolated side allows what at least one rule of at least one policy
  isolating it admits.  Policies only add: none denies anything by itself;
* a rule admits a connection when one of its peers matches the other pod (no peers: every pod) and one of its
  ports matches the destination port (no ports: every port).  A port is a number, a range (``endPort``) or a
  name, which is resolved on the *destination* pod's container ports; its protocol defaults to TCP;
* a peer is ``podSelector`` (pods of the policy's own namespace), ``namespaceSelector`` (every pod of the
  namespaces whose labels match; each namespace carries ``kubernetes.io/metadata.name``), both in one peer
  (pods matching the first in namespaces matching the second), or ``ipBlock``.

The CNI behaviour modelled is Calico's and Cilium's default: a policy is checked when a connection *opens*, so
a verdict here is about new connections (their connection tracking lets an established one live on; the
sandbox's data plane cannot keep those, see ``apply`` and docs/explanation/kube-api-emulation.md).

``ipBlock`` here: every pod of the sandbox has the IP 127.0.0.1 (as the API shows it), so a CIDR that contains
127.0.0.1, and no ``except`` that does, admits every pod; any other admits none.  That is Calico's reading
(pod IPs are matched against ipBlock); Cilium matches ipBlock only against addresses outside the cluster by
default.  ``sandbox_limits`` says so on every policy with an ipBlock.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chaosmesh_qa.emulation.kubeapi.selectors import match_labels

POD_IP = "127.0.0.1"  # every pod of the sandbox (workloads.POD_IP)
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
INGRESS, EGRESS = "Ingress", "Egress"
PROTOCOLS = ("TCP", "UDP", "SCTP")
KIND = "NetworkPolicy"

# The v1 schema, as the API server decodes it: a dict is an object (its fields), ("list", item), ("map", str),
# or a leaf: str, int, "intorstring".
_SELECTOR: dict[str, Any] = {"matchLabels": ("map", str),
                             "matchExpressions": ("list", {"key": str, "operator": str, "values": ("list", str)})}
_PEER: dict[str, Any] = {"podSelector": _SELECTOR, "namespaceSelector": _SELECTOR,
                         "ipBlock": {"cidr": str, "except": ("list", str)}}
_PORT: dict[str, Any] = {"protocol": str, "port": "intorstring", "endPort": int}
SPEC: dict[str, Any] = {"podSelector": _SELECTOR, "policyTypes": ("list", str),
                        "ingress": ("list", {"from": ("list", _PEER), "ports": ("list", _PORT)}),
                        "egress": ("list", {"to": ("list", _PEER), "ports": ("list", _PORT)})}
_TOP = ("apiVersion", "kind", "metadata", "spec")
_GO = {str: "string", int: "int32", "intorstring": "intstr.IntOrString", "list": "array", "map": "map", "obj": "struct"}
_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class Undecodable(ValueError):
    """The body does not decode as a NetworkPolicy (the API server answers 400 BadRequest)."""


class Invalid(ValueError):
    """The body decodes but does not validate (422 Invalid): ``(field path, message)`` per cause."""

    def __init__(self, causes: list[tuple[str, str]]) -> None:
        super().__init__(causes)
        self.causes = causes

    def __str__(self) -> str:
        text = [f"{path}: {message}" for path, message in self.causes]
        return text[0] if len(text) == 1 else "[" + ", ".join(text) + "]"


@dataclass(frozen=True)
class ContainerPort:
    port: int
    name: str | None = None
    protocol: str = "TCP"


@dataclass(frozen=True)
class PodRef:
    """A pod as a CNI sees it: its namespace, labels, container ports and IP."""

    name: str
    namespace: str
    labels: Mapping[str, str]
    ports: tuple[ContainerPort, ...] = ()
    ip: str = POD_IP


@dataclass(frozen=True)
class Policy:
    namespace: str
    name: str
    spec: Mapping[str, Any]  # as ``admit`` returns it (decoded and defaulted)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def types(self) -> tuple[str, ...]:
        return policy_types(self.spec)


@dataclass(frozen=True)
class Side:
    """One side of a connection: the policies isolating that pod in that direction, and those admitting it."""

    isolated_by: tuple[str, ...] = ()
    admitted_by: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return not self.isolated_by or bool(self.admitted_by)


@dataclass(frozen=True)
class Verdict:
    egress: Side = field(default_factory=Side)  # at the source
    ingress: Side = field(default_factory=Side)  # at the destination

    @property
    def allowed(self) -> bool:
        return self.egress.allowed and self.ingress.allowed


# ---------------------------------------------------------------------------------------------- admission

def admit(body: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The object the API server stores for ``body`` (unknown fields dropped, defaults set), and the unknown
    fields' paths (a warning each; ``fieldValidation=Strict`` refuses them).  Raises ``Undecodable`` or
    ``Invalid``."""
    unknown = [key for key in body if key not in _TOP and key != "status"]
    raw_spec = body.get("spec")
    spec = _decode(raw_spec, SPEC, "spec", unknown) if raw_spec is not None else {}
    spec = defaulted(spec)
    errors = validate_name(str((body.get("metadata") or {}).get("name") or "")) + validate_spec(spec)
    if errors:
        raise Invalid(errors)
    kept = {k: v for k, v in body.items() if k in _TOP}
    return {**kept, "spec": spec}, unknown


def _decode(value: Any, schema: Any, path: str, unknown: list[str]) -> Any:
    kind = "obj" if isinstance(schema, dict) else schema[0] if isinstance(schema, tuple) else schema
    ok = {"obj": isinstance(value, dict), "list": isinstance(value, list), "map": isinstance(value, dict),
          str: isinstance(value, str), int: isinstance(value, int) and not isinstance(value, bool),
          "intorstring": isinstance(value, (int, str)) and not isinstance(value, bool)}[kind]
    if not ok:
        got = {bool: "bool", str: "string", list: "array", dict: "object"}.get(type(value), "number")
        raise Undecodable(f"{KIND} in version \"v1\" cannot be handled as a {KIND}: json: cannot unmarshal {got} "
                          f"into Go struct field {path} of type {_GO[kind]}")
    if kind == "obj":
        for key in value:
            if key not in schema:
                unknown.append(f"{path}.{key}")
        return {k: _decode(v, schema[k], f"{path}.{k}", unknown) for k, v in value.items()
                if k in schema and v is not None}
    if kind == "list":
        return [_decode(v, schema[1], f"{path}[{i}]", unknown) for i, v in enumerate(value) if v is not None]
    if kind == "map":
        return {str(k): _decode(v, schema[1], f"{path}.{k}", unknown) for k, v in value.items()}
    return value


def policy_types(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """``policyTypes`` as the API server defaults it: Ingress, plus Egress when there are egress rules."""
    given = spec.get("policyTypes")
    if given:
        return tuple(given)
    return (INGRESS, EGRESS) if spec.get("egress") else (INGRESS,)


def defaulted(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``spec`` with the API server's defaults: ``podSelector`` ``{}``, ``policyTypes``, each port's TCP."""
    out = {"podSelector": {}, **spec, "policyTypes": list(policy_types(spec))}
    for direction in ("ingress", "egress"):
        if direction in out:
            out[direction] = [{**rule, **({"ports": [{"protocol": "TCP", **p} for p in rule["ports"]]}
                                          if "ports" in rule else {})} for rule in out[direction]]
    return out


def validate_name(name: str) -> list[tuple[str, str]]:
    if name and (len(name) > 253 or not _DNS_SUBDOMAIN.match(name)):
        return [("metadata.name", f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower '
                                  "case alphanumeric characters, '-' or '.', and must start and end with an "
                                  "alphanumeric character")]
    return []


def validate_spec(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The checks of the API server's NetworkPolicy validation, as ``(field path, message)``."""
    errors = _selector(spec.get("podSelector") or {}, "spec.podSelector")
    for direction, peers_key in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(spec.get(direction) or []):
            where = f"spec.{direction}[{i}]"
            for j, port in enumerate(rule.get("ports") or []):
                errors += _port(port, f"{where}.ports[{j}]")
            for j, peer in enumerate(rule.get(peers_key) or []):
                errors += _peer(peer, f"{where}.{peers_key}[{j}]")
    types = spec.get("policyTypes") or []
    if len(types) > 2:
        return [*errors, ("spec.policyTypes", "Invalid value: may not specify more than two policyTypes")]
    errors += [(f"spec.policyTypes[{i}]", f'Unsupported value: "{t}": supported values: "Ingress", "Egress"')
               for i, t in enumerate(types) if t not in (INGRESS, EGRESS)]
    return errors


def _selector(selector: Mapping[str, Any], path: str) -> list[tuple[str, str]]:
    errors = []
    for key, value in (selector.get("matchLabels") or {}).items():
        errors += _label_key(key, f"{path}.matchLabels") + _label_value(value, f"{path}.matchLabels")
    for i, expression in enumerate(selector.get("matchExpressions") or []):
        where, op, values = f"{path}.matchExpressions[{i}]", expression.get("operator"), expression.get("values")
        if op in ("In", "NotIn") and not values:
            errors.append((f"{where}.values", "Required value: must be specified when `operator` is 'In' or "
                                              "'NotIn'"))
        elif op in ("Exists", "DoesNotExist") and values:
            errors.append((f"{where}.values", "Forbidden: may not be specified when `operator` is 'Exists' or "
                                              "'DoesNotExist'"))
        elif op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            errors.append((f"{where}.operator", f'Invalid value: "{op}": not a valid selector operator'))
        errors += _label_key(str(expression.get("key") or ""), f"{where}.key")
        errors += [e for v in values or [] for e in _label_value(v, f"{where}.values")]
    return errors


def _label_key(key: str, path: str) -> list[tuple[str, str]]:
    prefix, _, name = key.rpartition("/")
    if not name or len(name) > 63 or not _NAME.match(name) or (prefix and not _DNS_SUBDOMAIN.match(prefix)):
        return [(path, f'Invalid value: "{key}": name part must consist of alphanumeric characters, \'-\', \'_\' '
                       "or '.', and must start and end with an alphanumeric character (with an optional DNS "
                       "subdomain prefix and '/')")]
    return []


def _label_value(value: str, path: str) -> list[tuple[str, str]]:
    if len(value) > 63 or not _NAME.match(value):
        return [(path, f'Invalid value: "{value}": a valid label must be an empty string or consist of '
                       "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
                       "character")]
    return []


def _port(port: Mapping[str, Any], path: str) -> list[tuple[str, str]]:
    errors = []
    protocol, number, end = port.get("protocol", "TCP"), port.get("port"), port.get("endPort")
    if protocol not in PROTOCOLS:
        errors.append((f"{path}.protocol", f'Unsupported value: "{protocol}": supported values: "TCP", "UDP", '
                                           '"SCTP"'))
    if isinstance(number, int):
        for value, where in ((number, "port"), *(((end, "endPort"),) if end is not None else ())):
            if not 1 <= value <= 65535:
                errors.append((f"{path}.{where}", f"Invalid value: {value}: must be between 1 and 65535, inclusive"))
        if end is not None and end < number:
            errors.append((f"{path}.endPort", f"Invalid value: {end}: must be greater than or equal to `port`"))
    elif isinstance(number, str):
        if end is not None:
            errors.append((f"{path}.endPort", f"Invalid value: {end}: may not be specified when `port` is "
                                              "non-numeric"))
        if (len(number) > 15 or not re.match(r"^[-a-z0-9]+$", number) or not re.search("[a-z]", number)
                or "--" in number or number.startswith("-") or number.endswith("-")):
            errors.append((f"{path}.port", f'Invalid value: "{number}": must be an IANA_SVC_NAME (at most 15 '
                                           "lower-case letters, digits and non-adjacent '-', with a letter)"))
    elif end is not None:
        errors.append((f"{path}.endPort", f"Invalid value: {end}: may not be specified when `port` is not "
                                          "specified"))
    return errors


def _peer(peer: Mapping[str, Any], path: str) -> list[tuple[str, str]]:
    errors = []
    for key in ("podSelector", "namespaceSelector"):
        if key in peer:
            errors += _selector(peer[key], f"{path}.{key}")
    if "ipBlock" in peer:
        errors += _ip_block(peer["ipBlock"], f"{path}.ipBlock")
    if not peer:
        errors.append((path, "Required value: must specify a peer"))
    elif len(peer) > 1 and "ipBlock" in peer:
        errors.append((path, "Forbidden: may not specify both ipBlock and another peer"))
    return errors


def _ip_block(block: Mapping[str, Any], path: str) -> list[tuple[str, str]]:
    cidr = block.get("cidr") or ""
    if not cidr:
        return [(f"{path}.cidr", "Required value")]
    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return [(f"{path}.cidr", f'Invalid value: "{cidr}": must be a valid CIDR value, (e.g. 10.9.8.0/24 or '
                                 "2001:db8::/64)")]
    errors = []
    for i, text in enumerate(block.get("except") or []):
        try:
            excluded = ipaddress.ip_network(text, strict=False)
        except ValueError:
            errors.append((f"{path}.except[{i}]", f'Invalid value: "{text}": must be a valid CIDR value'))
            continue
        if excluded.network_address not in network or excluded.prefixlen <= network.prefixlen:
            errors.append((f"{path}.except[{i}]", f'Invalid value: "{text}": must be a strict subset of `cidr`'))
    return errors


# ---------------------------------------------------------------------------------------------- evaluation

class PolicySet:
    """Every NetworkPolicy in force, and the namespaces' labels their namespaceSelectors read."""

    def __init__(self, policies: Iterable[Policy], namespaces: Mapping[str, Mapping[str, str]]) -> None:
        self.policies = sorted(policies, key=lambda p: p.key)
        self.namespaces = namespaces

    def selects(self, policy: Policy, pod: PodRef) -> bool:
        return policy.namespace == pod.namespace and match_labels(policy.spec.get("podSelector"), dict(pod.labels))

    def isolating(self, pod: PodRef, direction: str) -> list[Policy]:
        """The policies that isolate ``pod`` for ``direction`` (``Ingress`` or ``Egress``)."""
        return [p for p in self.policies if direction in p.types and self.selects(p, pod)]

    def verdict(self, source: PodRef, destination: PodRef, port: int, protocol: str = "TCP") -> Verdict:
        """Whether a new connection from ``source`` to ``destination``:``port`` may open, and why."""
        egress = self._side(self.isolating(source, EGRESS), "egress", "to", destination, destination, port, protocol)
        ingress = self._side(self.isolating(destination, INGRESS), "ingress", "from", source, destination, port,
                             protocol)
        return Verdict(egress, ingress)

    def _side(self, isolating: list[Policy], direction: str, peers_key: str, other: PodRef, destination: PodRef,
              port: int, protocol: str) -> Side:
        admitted = [p.key for p in isolating if any(
            _ports_match(rule.get("ports"), destination, port, protocol)
            and self._peers_match(rule.get(peers_key), p.namespace, other)
            for rule in p.spec.get(direction) or [])]
        return Side(tuple(p.key for p in isolating), tuple(admitted))

    def _peers_match(self, peers: Sequence[Mapping[str, Any]] | None, namespace: str, pod: PodRef) -> bool:
        return not peers or any(self.peer_matches(peer, namespace, pod) for peer in peers)

    def peer_matches(self, peer: Mapping[str, Any], namespace: str, pod: PodRef) -> bool:
        """Whether ``peer`` of a policy in ``namespace`` matches ``pod``."""
        if "ipBlock" in peer:
            return ip_block_matches(peer["ipBlock"], pod.ip)
        if "namespaceSelector" in peer:
            labels = self.namespaces.get(pod.namespace) or {NAMESPACE_NAME_LABEL: pod.namespace}
            if not match_labels(peer["namespaceSelector"], dict(labels)):
                return False
        elif pod.namespace != namespace:
            return False
        return "podSelector" not in peer or match_labels(peer["podSelector"], dict(pod.labels))


def ip_block_matches(block: Mapping[str, Any], ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    inside = address in ipaddress.ip_network(block["cidr"], strict=False)
    return inside and not any(address in ipaddress.ip_network(e, strict=False) for e in block.get("except") or [])


def _ports_match(ports: Sequence[Mapping[str, Any]] | None, destination: PodRef, port: int, protocol: str) -> bool:
    return not ports or any(_port_matches(p, destination, port, protocol) for p in ports)


def _port_matches(entry: Mapping[str, Any], destination: PodRef, port: int, protocol: str) -> bool:
    if entry.get("protocol", "TCP") != protocol:
        return False
    value = entry.get("port")
    if value is None:
        return True
    if isinstance(value, int):
        return value <= port <= int(entry.get("endPort", value))
    return any(c.name == value and c.protocol == protocol and c.port == port for c in destination.ports)


# ---------------------------------------------------------------------------------------------- the sandbox

def sandbox_limits(policy: Policy, pods: Sequence[PodRef], gateway: PodRef | None) -> list[str]:
    """What of ``policy`` the sandbox cannot carry out, one line each.  The sandbox's only connections are the
    mesh's pod-to-pod ones, over TCP, to each pod's one served container port; ``pods`` are its pods (with
    those ports), ``gateway`` the ingress gateway (a source only: what reaches it from outside is not filtered)."""
    selected = [p for p in pods if p.namespace == policy.namespace
                and match_labels(policy.spec.get("podSelector"), dict(p.labels))]
    notes = []
    if EGRESS in policy.types and selected:
        notes.append("Egress: only the mesh's pod-to-pod connections exist here; on a cluster DNS (kube-dns, port "
                     "53), istiod (port 15012) and addresses outside the cluster need egress rules too")
    if INGRESS in policy.types and selected:
        notes.append("Ingress: the sandbox's Prometheus is not a pod and scrapes every pod unfiltered; on a cluster "
                     "its scrapes (port 15020) need an ingress rule too")
    if gateway is not None and INGRESS in policy.types and policy.namespace == gateway.namespace \
            and match_labels(policy.spec.get("podSelector"), dict(gateway.labels)):
        notes.append(f"Ingress to {gateway.name}: traffic from outside the cluster is not filtered here")
    served = {(c.port, c.protocol) for p in pods for c in p.ports}
    names = {c.name for p in pods for c in p.ports if c.name}
    for direction, peers_key in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(policy.spec.get(direction) or []):
            for j, port in enumerate(rule.get("ports") or []):
                notes += _port_limit(port, f"{direction}[{i}].ports[{j}]", served, names)
            for j, peer in enumerate(rule.get(peers_key) or []):
                if "ipBlock" in peer:
                    what = "admits every pod" if ip_block_matches(peer["ipBlock"], POD_IP) else "admits no pod"
                    notes.append(f"{direction}[{i}].{peers_key}[{j}].ipBlock {peer['ipBlock']['cidr']}: every pod's "
                                 f"IP is {POD_IP} here, so it {what} (Calico's reading; Cilium matches ipBlock only "
                                 "outside the cluster); addresses outside the cluster are not in the sandbox")
    return notes


def _port_limit(port: Mapping[str, Any], where: str, served: set[tuple[int, str]], names: set[str]) -> list[str]:
    protocol, value = port.get("protocol", "TCP"), port.get("port")
    if protocol != "TCP":
        return [f"{where}: protocol {protocol}: the sandbox carries only TCP"]
    if isinstance(value, str) and value not in names:
        return [f"{where}: named port {value!r} is no container port of any pod here"]
    if isinstance(value, int):
        end = int(port.get("endPort", value))
        if not any(value <= number <= end for number, proto in served if proto == "TCP"):
            shown = f"{value}-{end}" if end != value else str(value)
            return [f"{where}: port {shown} carries no traffic here (the pods serve "
                    f"{', '.join(str(n) for n in sorted({n for n, _ in served}))})"]
    return []
