"""Istio ``EnvoyFilter`` objects applied to generated Envoy configuration, with istiod's own semantics.

The local control plane (``controlplane``) calls this for a team's own EnvoyFilters and for those the
Kubernetes API emulation receives: ``filters_for`` picks the EnvoyFilters that reach one proxy and puts
them in istiod's order; ``patch_listeners``, ``patch_clusters`` and ``patch_route_configurations`` apply
their config patches to the listeners, clusters and route configurations rendered for that proxy (the
plain JSON documents of ``listeners``, ``clusters`` and ``routes``); ``validate`` rejects what the
EnvoyFilter CRD's schema or istiod's validation webhook rejects.  Everything here is pure: inputs are
copied, never changed, and nothing is started.

What istiod does, and where (istio/istio; istio/api for the API):

* selection and order (pilot/pkg/model/push_context.go ``EnvoyFilters``, policyattachment.go): root-namespace
  filters reach every proxy, others only the proxies of their namespace; ``workloadSelector`` labels must be
  a subset of the proxy's; a filter with ``targetRefs`` reaches only Gateway-API gateways it names; order is
  priority, then root namespace first, then creation, then ``name.namespace``.  Patches are grouped by
  ``applyTo`` in that order (model/envoyfilter.go); ``INSERT_*`` on anything but a listener, network or HTTP
  filter or an HTTP route becomes ``ADD``; ``match.proxy`` (version regex, node metadata) is checked here.
* listeners (pilot/pkg/networking/core/envoyfilter/listener_patch.go): per listener, LISTENER
  merges/removes, then LISTENER_FILTER, then per filter chain FILTER_CHAIN merges/removes, NETWORK_FILTER
  list operations then merges, and for the HTTP connection manager HTTP_FILTER list operations then merges;
  added filter chains come after the chain patches, added listeners after all listener patches.
* clusters (cluster_patch.go, core/cluster.go for the contexts): merges and removes per cluster, added
  clusters per context after the generated ones.
* route configurations (rc_patch.go, core/httproute.go for the contexts): ROUTE_CONFIGURATION merges, then
  per virtual host VIRTUAL_HOST removes/merges/replaces and per route HTTP_ROUTE removes/merges, then adds.
* MERGE (pkg/proto/merge, networking/util ``MergeAnyWithAny``): protobuf merge driven by Envoy's own
  descriptors (the ``xds-protos`` package): messages merged field by field, repeated fields appended
  (``MERGE_AND_REPLACE_LIST``: replaced), map entries replaced whole, scalars replaced when set, setting one
  member of a oneof clears the others, a ``Duration`` replaced.  A filter MERGE merges ``typed_config``
  with ``typed_config`` of the same type and may rename the filter; nothing else of its value applies.
  A patch value is read as istiod reads it (pkg/config/xds ``BuildXDSObjectFromStruct``, non-strict):
  camelCase or snake_case, unknown fields (such as the v2 ``config`` of a filter) dropped; one whose types
  do not parse is skipped.

Where istiod panics and recovers (a filter MERGE whose ``typed_config`` type differs from the filter's),
the patches of that pass do not take effect: here all of them, for that listener context or that cluster
(istiod keeps what it changed in place before the panic).  ``EXTENSION_CONFIG`` (ECDS, which the local
control plane does not serve) and ``BOOTSTRAP`` (never applied by istiod) patches change nothing here;
``unsupported_patches`` names them.  Waypoints are not modelled: ``WAYPOINT`` patches match no proxy.

The engine's parts: ``model`` (the objects and patches), ``selection``, ``listener_patch``, ``cluster_patch``,
``route_patch``, ``protomerge`` (MERGE on JSON by Envoy's descriptors) and ``validation``.
"""

from __future__ import annotations

from chaosmesh_qa.targets.local.envoy.envoyfilters.cluster_patch import parse_cluster_name, patch_clusters
from chaosmesh_qa.targets.local.envoy.envoyfilters.listener_patch import patch_listeners
from chaosmesh_qa.targets.local.envoy.envoyfilters.model import (
    ROOT_NAMESPACE,
    EnvoyFilterInvalid,
    EnvoyFilterObject,
    Proxy,
)
from chaosmesh_qa.targets.local.envoy.envoyfilters.route_patch import (
    parse_gateway_route_name,
    patch_route_configurations,
)
from chaosmesh_qa.targets.local.envoy.envoyfilters.selection import filters_for, unsupported_patches
from chaosmesh_qa.targets.local.envoy.envoyfilters.validation import validate

__all__ = [
    "ROOT_NAMESPACE",
    "EnvoyFilterInvalid",
    "EnvoyFilterObject",
    "Proxy",
    "filters_for",
    "parse_cluster_name",
    "parse_gateway_route_name",
    "patch_clusters",
    "patch_listeners",
    "patch_route_configurations",
    "unsupported_patches",
    "validate",
]
