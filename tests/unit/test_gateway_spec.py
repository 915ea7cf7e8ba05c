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


def test_the_default_datapath_is_left_out_so_older_gateway_images_read_the_spec(tmp_path):
    assert "datapath" not in json.loads(make_spec(tmp_path).to_json())
