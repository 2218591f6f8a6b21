"""Scaffolding for ``chaosmesh-qa new``: a ready-to-run experiment for a team's mesh, or a mesh directory
from a team's Kubernetes manifests and Istio YAML.

* ``experiment.new_experiment(model, kind, service, source)``: a complete Chaos Toolkit experiment (the
  shipped experiments' controls, traffic, rollbacks and probes) for one fault of ``targets.policy.FAULT_KINDS``
  on a service or an edge the mesh has, checked against the mesh first; the recovery budget and the SLO
  bounds come from the mesh's own policies (``timing``), and the experiment's description says how.
* ``meshdir.new_mesh_dir(source_dir, out_dir)``: copies the YAML the loader would read and writes the
  ``Mesh`` document the manifests cannot say (who calls whom, the ingress), then loads the result with
  ``mesh.load_mesh`` before it is moved into place: what is written is a mesh directory the tool accepts.

Called by ``chaosmesh_qa.cli.new`` only; the CLI keeps the options and the printing, everything else is here.
"""

from chaosmesh_qa.scaffold.experiment import Scaffolded, new_experiment
from chaosmesh_qa.scaffold.meshdir import Skeleton, new_mesh_dir

__all__ = ["Scaffolded", "Skeleton", "new_experiment", "new_mesh_dir"]
