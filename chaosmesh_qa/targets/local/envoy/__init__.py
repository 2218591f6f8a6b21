"""Translation of the mesh model into Envoy v3 resources (pure functions, no I/O).

``controlplane`` calls these to render bootstraps and the file-xDS documents it writes.
"""
