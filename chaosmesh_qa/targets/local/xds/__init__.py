"""The embedded mesh's xDS server: Envoy configuration over gRPC (ADS), as istiod serves it."""
