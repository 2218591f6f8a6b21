"""What the Kubernetes API emulation needs of the sandbox it dresses as a cluster: all of it, and nothing more.

The local target's supervisor satisfies ``Sandbox`` structurally (mypy checks it where the emulation is
wired in, ``kubeapi.__main__``); the emulation never names the supervisor.  From ``targets.local`` it
imports only the pod handle ``Pod`` and ``SERVING_STATES``, which it reads as data, and the EnvoyFilter
engine's ``EnvoyFilterObject`` and ``validate`` (istiod's validation, as its webhook runs it).  The
AuthorizationPolicies it hands over are the mesh model's own (``mesh.security_model.AuthzPolicy``), parsed as a mesh
directory's are.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from chaosmesh_qa.mesh.model import MeshModel
from chaosmesh_qa.mesh.security_model import AuthzPolicy
from chaosmesh_qa.targets.local.envoy.envoyfilters import EnvoyFilterObject
from chaosmesh_qa.targets.local.pods import Pod


class Identity(Protocol):
    """A certificate and its key, as files (PEM)."""

    @property
    def cert(self) -> str: ...

    @property
    def key(self) -> str: ...


class CertificateAuthority(Protocol):
    """The sandbox's throw-away mesh CA: it signs the emulation's serving certificate and goes in the kubeconfig."""

    @property
    def ca_path(self) -> str: ...

    def identity(self, spiffe_id: str, dns_name: str, ip_addresses: tuple[str, ...] = ()) -> Identity: ...


class ContainerLog(Protocol):
    """One container's log as the sandbox keeps it: a file, and where each instance of the container began."""

    @property
    def path(self) -> Path:
        """stdout and stderr of every instance of the container, appended (restarts in place included)."""
        ...

    @property
    def starts(self) -> tuple[tuple[int, float], ...]:
        """(byte offset, epoch seconds) of each start of the container, oldest first; empty until it starts."""
        ...


class Sandbox(Protocol):
    """A running embedded mesh, as the emulation sees it."""

    @property
    def state_dir(self) -> Path:
        """Where the kubeconfig, the token, the call log and the stored objects go."""
        ...

    @property
    def mesh_dir(self) -> Path:
        """The mesh definition's YAML, whose own Istio objects the emulation serves read-only."""
        ...

    @property
    def model(self) -> MeshModel | None: ...

    @property
    def pods(self) -> dict[str, Pod]:
        """The running pods by name (not the ingress gateway)."""
        ...

    @property
    def state(self) -> str:
        """``starting``, ``ready``, ``stopping`` or ``failed``."""
        ...

    @property
    def started_at(self) -> float: ...

    @property
    def pki(self) -> CertificateAuthority: ...

    def allocate_port(self) -> int:
        """A free loopback port for the emulation to listen on."""
        ...

    def container_log(self, pod: str, container: str) -> ContainerLog | None:
        """The log of a running pod's ``app`` or ``envoy`` container; ``None`` for no such pod or container."""
        ...

    def callees_of(self, caller: str) -> list[str]:
        """The services ``caller`` sends traffic to in this sandbox."""
        ...

    def set_envoy_filters(self, objects: list[EnvoyFilterObject], labels: dict[str, dict[str, str]]) -> None:
        """The EnvoyFilters in force, and each pod's labels as patched through the API (their workload selectors
        match those): every proxy's listeners are patched with the filters that reach it, and pushed."""
        ...

    def set_authorization_policies(self, policies: tuple[AuthzPolicy, ...], labels: dict[str, dict[str, str]]) -> None:
        """The AuthorizationPolicies in force, all of them (they replace the mesh model's), and each pod's labels as
        patched through the API (their selectors match those): every sidecar's inbound RBAC filters and the ingress
        gateway's are rendered again from them, and pushed where they changed."""
        ...

    def deny_connections(self, denied: Mapping[str, frozenset[str]]) -> None:
        """The new connections a NetworkPolicy-enforcing CNI would not let open, replacing the previous ones: source
        pod (``ingress``: the ingress gateway) -> the pods it may not connect to.  That source's own view of their
        endpoints points at the supervisor's tarpit (as a drop partition's: connects hang), and nobody else's."""
        ...

    def kill_pod(self, name: str) -> Pod:
        """Delete a pod (SIGKILL app and sidecar); it leaves the endpoint set."""
        ...

    async def replace_pod(self, dead: Pod) -> Pod | None:
        """Start a pod with a new name in place of a deleted one; ``None`` if it failed to start."""
        ...
