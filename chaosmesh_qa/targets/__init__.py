"""Mesh targets: where faults land and metrics come from.

``base.MeshTarget`` is what every target does; ``local`` (the embedded sandbox) and ``kubernetes`` (a
cluster with Istio) implement it and know nothing of each other.  ``factory.get_target`` builds the one
an experiment asks for; ``run`` holds which run owns the faults (``run_owner``, ``begin_run``,
``end_run``).  Their public names are re-exported here for callers outside the package; the package's
own modules import them from ``factory`` and ``run``.
"""

from chaosmesh_qa.targets.factory import STATE_DIR_KEY, TARGET_ENV, TARGET_KEY, TARGETS, get_target
from chaosmesh_qa.targets.run import OWNER_ENV, begin_run, end_run, run_owner

__all__ = ["OWNER_ENV", "STATE_DIR_KEY", "TARGETS", "TARGET_ENV", "TARGET_KEY", "begin_run", "end_run", "get_target",
           "run_owner"]
