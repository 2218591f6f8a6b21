"""Metrics: the SLI catalog (named PromQL per dialect, from ``probes/``) and the queries built on it."""

from chaosmesh_qa.metrics.catalog import SLI, Catalog, Param, default_probes_dir, load_catalog

__all__ = ["SLI", "Catalog", "Param", "default_probes_dir", "load_catalog"]
