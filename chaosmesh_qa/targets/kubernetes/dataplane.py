"""Whether a change reached the sidecars: their listeners, as their own stats tell, read through the API server.

``KubernetesTarget`` calls ``ListenerWatch`` around an L7 fault's EnvoyFilter: before creating (or deleting)
it, the listener counters of every callee pod; after, until each pod's listeners were modified, a rejection,
or a deadline.  An EnvoyFilter that matches nothing (a wrong context, port, filter name or selector) changes
no listener, and Envoy counts only real changes (``listener_manager.listener_modified``: a pushed listener
identical to the one in use is not a modification), so such a fault is recorded ``confirmed: false`` with
the reason, never as applied.  One that Envoy refuses shows as ``lds.update_rejected``.

The counters come from the sidecar's merged stats on port 15020 (Istio's default stats inclusion keeps every
``listener_manager`` stat), read with ``GET pods/NAME:15020/proxy/stats/prometheus`` (RBAC: ``get
pods/proxy``).  What this cannot see: connections opened before the change keep the old filter chain until
their next response closes them (Istio's sidecars drain immediately), so a request or two per pooled
connection may still take the old path.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from chaosmesh_qa.errors import ChaosMeshQAError
from chaosmesh_qa.targets.kubernetes.cluster import Cluster, NotFound

STATS_PORT = 15020  # pilot-agent's merged Prometheus endpoint
STATS_PATH = "stats/prometheus"
MODIFIED = "envoy_listener_manager_listener_modified"
REJECTED = "envoy_listener_manager_lds_update_rejected"
DRAINING = ("envoy_listener_manager_total_filter_chains_draining", "envoy_listener_manager_total_listeners_draining")
CONFIRM_TIMEOUT_S = 10.0  # istiod debounces and pushes within a second or two; far above that
POLL_S = 0.2


@dataclass(frozen=True)
class Listeners:
    modified: float
    rejected: float


def counter(text: str, name: str) -> float | None:
    """The sum of a Prometheus text exposition's samples named ``name`` (None when it has none)."""
    values = [float(m.group(1)) for m in re.finditer(rf"^{re.escape(name)}(?:\{{[^}}]*\}})?\s+(\S+)", text, re.M)]
    return sum(values) if values else None


class ListenerWatch:
    """Listener counters of ``pods`` taken now; ``changed`` waits until every pod's listeners changed."""

    def __init__(self, cluster: Cluster, namespace: str, pods: list[str]) -> None:
        self.cluster, self.namespace, self.pods = cluster, namespace, list(pods)
        self.error: str | None = None
        self.before = self._read_all()

    def _read(self, pod: str) -> Listeners:
        text = self.cluster.pod_proxy_get(self.namespace, pod, STATS_PORT, STATS_PATH)
        return Listeners(counter(text, MODIFIED) or 0.0, counter(text, REJECTED) or 0.0)

    def _read_all(self) -> dict[str, Listeners]:
        found: dict[str, Listeners] = {}
        for pod in list(self.pods):
            try:
                found[pod] = self._read(pod)
            except NotFound:
                self.pods.remove(pod)  # gone meanwhile (replaced): nothing left there to confirm
            except ChaosMeshQAError as exc:
                self.error = f"the sidecars' stats cannot be read through the API server: {exc}"
                return {}
        return found

    def changed(self, timeout_s: float = CONFIRM_TIMEOUT_S) -> tuple[bool, str | None]:
        """(confirmed, why not): every pod's listeners modified since, none rejected, within ``timeout_s``."""
        if self.error is not None or not self.pods:
            return False, self.error or "no running pod to confirm on"
        deadline = time.monotonic() + timeout_s
        while True:
            now = self._read_all()
            if self.error is not None:
                return False, self.error
            rejected = sorted(p for p in self.pods if p in self.before and now[p].rejected > self.before[p].rejected)
            if rejected:
                return False, f"Envoy rejected the listener update on {', '.join(rejected)} (lds.update_rejected)"
            waiting = sorted(p for p in self.pods if p in self.before and now[p].modified <= self.before[p].modified)
            if not waiting:
                return True, None
            if time.monotonic() >= deadline:
                return False, (f"the listeners of {', '.join(waiting)} did not change within {timeout_s:g} s: the "
                               "EnvoyFilter matches nothing there (its context, listener port, filter names or "
                               "workload selector), or istiod did not push it")
            time.sleep(POLL_S)

    def drained(self, timeout_s: float) -> bool:
        """Whether every pod finished draining what the change replaced (old filter chains and listeners, with
        the connections still on them) within ``timeout_s``; Istio's sidecars drain for ``drainDuration``
        (45 s by default), the sandbox's for 2 s."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                texts = [self.cluster.pod_proxy_get(self.namespace, pod, STATS_PORT, STATS_PATH) for pod in self.pods]
            except (ChaosMeshQAError, NotFound):
                return False
            if all(not (counter(text, name) or 0) for text in texts for name in DRAINING):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_S)
