"""The gateway spec round-trips through JSON, and stays readable by a gateway image that predates datapaths."""

from __future__ import annotations

import dataclasses
import json

from gatewaykit import make_spec
from natlab.gateway.spec import GatewaySpec


def test_a_spec_round_trips_through_json(tmp_path):
    spec = make_spec(tmp_path)
    assert GatewaySpec.from_json(spec.to_json()) == spec
    other = dataclasses.replace(spec, datapath="memory")
    assert GatewaySpec.from_json(other.to_json()) == other


def test_nfqueue_is_left_out_so_older_gateway_images_read_the_spec(tmp_path):
    spec = dataclasses.replace(make_spec(tmp_path), datapath="nfqueue")
    assert "datapath" not in json.loads(spec.to_json())
    assert GatewaySpec.from_json(spec.to_json()).datapath == "nfqueue"


def test_a_spec_naming_no_datapath_is_nfqueue_whatever_the_default_is(tmp_path):
    data = json.loads(make_spec(tmp_path).to_json())
    assert data["datapath"] == "kernel-cache"  # the default is written, not implied
    del data["datapath"]
    assert GatewaySpec.from_json(json.dumps(data)).datapath == "nfqueue"
