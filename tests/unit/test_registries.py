"""The two registries: one list of names each, objects with the protocol's traits, and
nobody else comparing a backend's name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import natlab
from natlab.datapaths import registry as datapaths
from natlab.errors import ConfigError, LabError, UnknownBackend
from natlab.gateway.service import Gateway
from natlab.realisers import registry as realisers
from natlab.realisers.memory.network import MemNet
from natlab.topology import load

PACKAGE = Path(natlab.__file__).parent
TRAITS = ("needs_root", "runs_programs", "makes_labs", "realtime", "scenario_default", "runs_matrix")


def test_every_realiser_has_its_name_a_summary_and_boolean_traits():
    assert realisers.names() == ("netns", "memory", "docker")
    for name, realiser in realisers.REALISERS.items():
        assert realiser.name == name and realiser.summary
        assert all(isinstance(getattr(realiser, t), bool) for t in TRAITS), name
        assert callable(realiser.unavailable) and callable(realiser.open)


def test_realisers_are_chosen_by_trait():
    assert realisers.names(makes_labs=True) == ("netns", "docker")
    assert realisers.names(scenario_default=True) == ("netns", "memory")
    assert realisers.names(runs_matrix=True) == ("netns", "memory")
    assert realisers.get("memory").unavailable() is None


@pytest.mark.parametrize("lookup", [lambda: realisers.get("memroy"), lambda: datapaths.get("nfquee")])
def test_an_unknown_name_is_a_config_error_with_did_you_mean(lookup):
    with pytest.raises(UnknownBackend) as err:
        lookup()
    assert isinstance(err.value, ConfigError) and isinstance(err.value, LabError)
    assert "did you mean" in err.value.message


def test_a_lab_cannot_be_brought_up_in_memory():
    topo = load(PACKAGE / "data" / "topologies" / "two-homes.yaml")
    with pytest.raises(ConfigError, match="makes no lab"):
        realisers.lab_realiser(topo, "memory")


def test_every_datapath_has_its_name_and_the_memory_one_feeds_real_gateways():
    assert datapaths.names() == ("nfqueue", "memory", "kernel-cache", "dpdk")
    for name in datapaths.names():
        assert datapaths.get(name).name == name
    assert not datapaths.get("nfqueue").in_process
    net = MemNet.from_topology(load(PACKAGE / "data" / "topologies" / "two-homes.yaml"))
    assert net.datapath.name == "memory" and net.datapath.in_process
    assert all(type(net.gateway(name)) is Gateway for name in net.nats)


BACKEND_NAMES = {"netns", "memory", "docker", "nfqueue", "kernel-cache", "dpdk", "kubernetes"}
REGISTRIES = {PACKAGE / "realisers" / "registry.py", PACKAGE / "datapaths" / "registry.py"}


def _name_comparisons(path: Path, root: Path = PACKAGE) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                values = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
                for value in values:
                    if isinstance(value, ast.Constant) and value.value in BACKEND_NAMES:
                        found.append(f"{path.relative_to(root)}:{node.lineno} compares {value.value!r}")
    return found


def test_no_backend_name_is_compared_outside_the_registries():
    found = [f for path in sorted(PACKAGE.rglob("*.py")) if path not in REGISTRIES
             for f in _name_comparisons(path)]
    assert found == []


def test_the_name_check_sees_equality_and_membership(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('if backend == "memory" or b in ("netns", "docker"):\n    pass\n')
    found = " ".join(f.rpartition(" compares ")[2] for f in _name_comparisons(bad, tmp_path))
    assert found == "'memory' 'netns' 'docker'"

