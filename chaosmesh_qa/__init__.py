"""chaosmesh-qa: a Chaos Toolkit extension that QA-tests service meshes.

Faults (pod kills, L7 latency and aborts, partitions) go through a ``MeshTarget``;
the embedded local target runs the team's Istio YAML on real Envoy sidecars.
"""

__version__ = "0.1.0"
