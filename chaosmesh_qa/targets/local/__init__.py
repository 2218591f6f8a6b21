"""The embedded local target: an Envoy mesh, Prometheus and the demo app on one machine."""
