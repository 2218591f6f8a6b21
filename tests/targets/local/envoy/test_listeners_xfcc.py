"""The sidecar's inbound listener builds x-forwarded-client-cert as the mesh config's proxyHeaders say (issue 18
point 3), as istiod sets every sidecar's inbound HTTP connection manager; pure: the generated Envoy JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chaosmesh_qa.mesh import load_mesh
from chaosmesh_qa.targets.local.envoy.listeners import HCM, PodIdentity, inbound_listener

PROFILE = Path(__file__).resolve().parents[3] / "profiles" / "sanitized-xfcc"
IDENTITY = PodIdentity("spiffe://cluster.local/ns/shop/sa/catalog", "/pki/catalog.crt", "/pki/catalog.key",
                       "/pki/ca.crt")


def _managers(listener: dict[str, Any]) -> list[dict[str, Any]]:
    return [f["typed_config"] for chain in listener["filter_chains"] for f in chain["filters"] if f["name"] == HCM]


@pytest.mark.parametrize("mode", ["STRICT", "PERMISSIVE"])
def test_the_inbound_forwards_the_client_certificate_as_the_mesh_config_says(mode: str) -> None:
    config = load_mesh(PROFILE).model.mesh_config
    assert (config.forwarded_client_cert, config.xfcc_names_the_caller) == ("SANITIZE", False)
    sanitized = inbound_listener(15006, mode, IDENTITY, [], forward_client_cert=config.forwarded_client_cert,
                                 xfcc_uri=config.xfcc_uri)
    assert {m["forward_client_cert_details"] for m in _managers(sanitized)} == {"SANITIZE"}
    default = inbound_listener(15006, mode, IDENTITY, [])  # Istio's default: the caller's certificate appended
    assert [(m["forward_client_cert_details"], m["set_current_client_cert_details"]["uri"])
            for m in _managers(default)][:1] == [("APPEND_FORWARD", True)]
