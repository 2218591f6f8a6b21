"""What probes share: the target, its SLI catalog and Prometheus, and this run's reference times.

Probe modules check their arguments first, with ``check_since``/``window`` here and
``chaosmesh_qa.checks`` (one-line ``InvalidArgument``, before any contact with the target), then
call ``MeasureContext.from_configuration(configuration)``; it checks service names against the
target (an unknown service is an ``InvalidArgument``, never "no data") and resolves ``since``
("fault_start", "last_heal" or seconds) from this run's fault leases.  This module keeps no
state between calls (nothing to reset between runs) but the set of windows it has said it widens
(``readable``), so that each is said once.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from chaosmesh_qa import checks
from chaosmesh_qa.errors import InvalidArgument, MeasurementFailed
from chaosmesh_qa.metrics.catalog import Catalog, load_catalog
from chaosmesh_qa.metrics.prometheus import PrometheusQuery
from chaosmesh_qa.targets.base import MeshTarget
from chaosmesh_qa.targets.factory import get_target
from chaosmesh_qa.targets.policy import FaultRecord
from chaosmesh_qa.targets.run import run_owner

SINCE_CHOICES = ("fault_start", "last_heal")
log = logging.getLogger("chaosmesh_qa.probes")
_WIDENED: set[tuple[str, str]] = set()  # (argument, range) already said to be widened: each said once


@dataclass
class MeasureContext:
    target: MeshTarget
    description: dict[str, Any]
    catalog: Catalog
    prometheus: PrometheusQuery

    @classmethod
    def from_configuration(cls, configuration: dict[str, Any] | None) -> MeasureContext:
        target = get_target(configuration)
        prometheus_url = target.prometheus_url()  # waits, bounded, for a just-started sandbox's first scrapes
        description = target.describe()
        # a caller is known in the metrics by its canonical service where the target says it differs from the name
        # of its Service (a cluster's Helm-labelled pods): a probe's `source` is a service name either way
        canonical = {name: str(s["canonical_service"]) for name, s in description["services"].items()
                     if s.get("canonical_service") not in (None, name)}
        if description.get("ingress_gateway"):  # the front door is the ingress gateway's canonical service
            canonical["ingress"] = str(description["ingress_gateway"])
        catalog = load_catalog(target.metrics_dialect).with_aliases("source", canonical)
        return cls(target, description, catalog, PrometheusQuery(prometheus_url))

    def service(self, name: Any, argument: str = "service") -> str:
        known = self.description["services"]
        if name not in known and not (argument == "source" and name == "ingress"):
            raise InvalidArgument(f"{argument}: unknown service {name!r} (known: {', '.join(sorted(known))})")
        return str(name)

    def front_service(self) -> str:
        return str(self.description["ingress_service"])

    def query(self, sli: str, **params: Any) -> float | None:
        return self.prometheus.value(self.catalog.render(sli, **params))

    def readable(self, range_: str, argument: str = "window_s") -> str:
        """``range_`` widened to two scrape intervals of the target's Prometheus when it is shorter: a narrower
        range holds at most one sample of each series, so ``rate`` and ``increase`` have nothing to measure
        (a cluster's Prometheus scrapes every 15 s to 60 s; the sandbox's every second).  Logged once."""
        interval = self.prometheus.scrape_interval_s()
        seconds = int(range_.removesuffix("s"))
        if interval is None or seconds >= 2 * interval:
            return range_
        widened = span(2 * interval)
        if (argument, range_) not in _WIDENED:
            _WIDENED.add((argument, range_))
            log.warning("chaosmesh-qa: %s=%s is shorter than two scrapes of %s (every %g s): read over %s instead",
                        argument, range_, self.prometheus.url, interval, widened)
        return widened

    def record_lag_s(self) -> float:
        """From a request's completion to its sample in Prometheus, at most: Envoy's stats flush (1 s in the
        sandbox; Istio's metrics are live), one scrape interval, and one recording-rule evaluation (1 s: the
        Istio series of the Kubernetes API emulation)."""
        return 2.0 + (self.prometheus.scrape_interval_s() or 1.0)

    def run_faults(self) -> list[FaultRecord]:
        return self.target.fault_history(run_owner())

    def reference_time(self, since: Any) -> float:
        """Epoch seconds that ``since`` names: this run's latest fault start, its last heal, or ``since`` s ago."""
        since = check_since(since)
        if not isinstance(since, str):
            return time.time() - since
        faults = self.run_faults()
        if not faults:
            raise MeasurementFailed(f"since={since}: this run has injected no fault yet")
        if since == "fault_start":  # the run's latest fault: experiments inject one after another
            return max(float(f["started_at"]) for f in faults)
        ended = [float(f["ended_at"]) for f in faults if "ended_at" in f]
        if not ended:
            raise MeasurementFailed("since=last_heal: no fault of this run has been healed yet")
        return max(ended)


def check_since(since: Any) -> str | float:
    """``since``: one of ``SINCE_CHOICES`` or a number of seconds ago (> 0, at most a week)."""
    if isinstance(since, str):
        return checks.choice("since", since, SINCE_CHOICES)
    if not checks.is_number(since):
        checks.fail("since", f"a number of seconds > 0 or one of {', '.join(SINCE_CHOICES)}", since)
    return checks.seconds("since", since)


def window(seconds: Any, argument: str = "window_s") -> str:
    """A Prometheus range from a user's number of seconds > 0 (at most a week)."""
    return span(checks.seconds(argument, seconds))


def span(seconds: float) -> str:
    """A Prometheus range of at least 2 s (two 1-s scrapes) covering ``seconds`` (already checked)."""
    return f"{max(2, math.ceil(seconds))}s"
