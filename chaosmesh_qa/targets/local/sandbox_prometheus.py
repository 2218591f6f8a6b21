"""The sandbox's Prometheus process: started before the pods with every target known, its first seconds of each
target pushed by the scrape bridge, reloaded as pods come and go, and the wait until it has scraped every Envoy.

The supervisor (``supervisor.Supervisor``) owns one ``SandboxPrometheus``: it calls ``start`` while the mesh comes
up, ``wait_scraped`` once every pod is ready (``metrics_ready`` in its status), ``reload`` when a pod is replaced,
and ``stop`` at teardown.  The configuration and command line are ``prometheus``'s; the bridge is ``scrape_bridge``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from chaosmesh_qa.errors import ProcessNotReady
from chaosmesh_qa.targets.local import processes, prometheus
from chaosmesh_qa.targets.local.controlplane import PodSpec
from chaosmesh_qa.targets.local.envoy.common import INGRESS
from chaosmesh_qa.targets.local.ports import PortAllocator
from chaosmesh_qa.targets.local.scrape_bridge import ScrapeBridge
from chaosmesh_qa.targets.local.state import SandboxPaths

log = logging.getLogger("chaosmesh_qa.supervisor")
READY_TIMEOUT_S = 20.0
Background = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]


def scrape_target(spec: PodSpec) -> prometheus.ScrapeTarget:
    """A pod's Envoy as Prometheus scrapes it, with the labels every SLI selects on."""
    return prometheus.ScrapeTarget(spec.ports.stats, {
        "service": spec.service, "version": spec.version, "pod": spec.name,
        "role": "gateway" if spec.service == INGRESS else "sidecar"})


class SandboxPrometheus:
    def __init__(self, paths: SandboxPaths, ports: PortAllocator, http: Callable[[], aiohttp.ClientSession],
                 targets: Callable[[], list[prometheus.ScrapeTarget]],
                 scrape_interval_s: int = prometheus.DEFAULT_SCRAPE_INTERVAL_S) -> None:
        self.paths, self.ports, self.http, self.targets = paths, ports, http, targets
        self.scrape_interval_s = scrape_interval_s
        self.process: asyncio.subprocess.Process | None = None
        self.port = 0
        self.bridge: ScrapeBridge | None = None  # started with Prometheus
        self.scraped_every_target = False  # it has scraped every Envoy at least once
        self.error: str | None = None

    @property
    def url(self) -> str | None:
        return f"http://127.0.0.1:{self.port}" if self.port else None

    async def start(self, targets: list[prometheus.ScrapeTarget], rules: Sequence[Callable[[Path], None]],
                    background: Background) -> None:
        """Prometheus on a free loopback port, already knowing ``targets`` (the pods about to start) and reading
        the recording rules each of ``rules`` writes into the directory it is given (an extension's, such as the
        Istio metric names of the Kubernetes API emulation), and the scrape bridge as a ``background`` task until
        Prometheus's own scrape loops have each target."""
        binary = prometheus.find_prometheus()
        self.port = self.ports.allocate()
        self.paths.prometheus.mkdir(parents=True, exist_ok=True)
        for write in rules:
            write(self.paths.prometheus / "rules")
        prometheus.write_config(self.paths.prometheus_config, targets, self.scrape_interval_s)
        self.process = await processes.spawn(
            prometheus.command(binary, self.paths.prometheus_config, self.paths.prometheus / "data", self.port),
            self.paths.logs / "prometheus.log")
        await processes.wait_until(lambda: processes.http_ok(self.http(), f"{self.url}/-/ready"), READY_TIMEOUT_S,
                                   "prometheus", alive=self._alive)
        # until Prometheus's own scrape loops have each target (its 5 s discovery tick), the supervisor pushes them
        self.bridge = ScrapeBridge(self.http, f"{self.url}", self.targets, self.scrape_interval_s)
        background(self.bridge.run())

    async def reload(self) -> None:
        """The current targets written and read again (a pod replaced); the bridge covers the new one meanwhile."""
        # SIGHUP, not POST /-/reload: the lifecycle API would let any local user reload or stop Prometheus.
        prometheus.write_config(self.paths.prometheus_config, self.targets(), self.scrape_interval_s)
        if self._alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGHUP)
        if self.bridge is not None:
            self.bridge.poke()

    async def wait_scraped(self) -> bool:
        """Until every Envoy has a sample (the bridge's or Prometheus's own scrape's) in both jobs; False (and
        ``error`` set) if that does not happen within ``READY_TIMEOUT_S``."""
        if self.bridge is not None:
            self.bridge.poke()  # every pod is ready now
        expected = 2 * len(self.targets())  # both jobs (prometheus.JOBS) have scraped each
        url = f"{self.url}/api/v1/query"

        async def all_up() -> bool:
            try:
                async with self.http().get(url, params={"query": "count(up == 1)"}) as response:
                    result = (await response.json())["data"]["result"]
                    return bool(result) and int(float(result[0]["value"][1])) >= expected
            except (aiohttp.ClientError, KeyError, ValueError):
                return False

        try:
            await processes.wait_until(all_up, READY_TIMEOUT_S, "prometheus scraping every envoy", interval_s=0.05)
        except ProcessNotReady as exc:
            self.error = str(exc)
            log.error("prometheus never scraped every envoy: %s", exc)
            return False
        self.scraped_every_target = True
        return True

    async def stop(self) -> None:
        await processes.stop(self.process)

    def _alive(self) -> bool:
        return self.process is not None and self.process.returncode is None
