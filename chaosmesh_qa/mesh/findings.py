"""One finding of ``chaosmesh-qa explain``: a stable code, where, what, why, and the experiment that shows it.

Built by ``mesh.explain`` (the mesh's settings) and ``mesh.explain_slos`` (the experiments' SLOs).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    code: str  # CMQ-<area><nnn>, never renumbered
    severity: str  # "warning" (a setting that cannot do what it seems to) or "info"
    location: str  # file: Kind/name: field (or file: activity: field for an experiment)
    message: str
    why: str
    experiment: str  # a shipped experiment's name, or the path of the user's experiment it was found in
