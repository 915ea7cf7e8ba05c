"""natlab's curated public API: the names, that each resolves, and that importing it stays cheap."""

from __future__ import annotations

import subprocess
import sys

import natlab

PUBLIC = {
    # the engine
    "Dependency", "Drop", "DropReason", "Emit", "Endpoint", "Engine", "Event", "EventKind", "Flow",
    "Forward", "Fragments", "Hairpin", "HairpinFiltering", "Hairpinning", "IcmpPolicy", "InboundFirst",
    "Limits", "MappingView", "Policy", "Pooling", "PortAssignment", "PortForward", "PortRange", "Proto",
    "Protocol", "Refresh", "SessionView", "Side", "StaticNat", "SynResponse", "TcpPolicy", "Tick",
    "Timeouts", "Verdict",
    # behaviours, topologies, labs
    "resolve", "load_preset", "load_topology", "Topology", "up", "attach", "down", "Lab",
    # the seams and the one gateway service
    "Realiser", "Driver", "Probe", "ProbeResult", "Datapath", "Gateway", "GatewaySpec", "MemNet",
    # scenarios
    "load_scenario", "run_scenario",
    # errors
    "BackendUnavailable", "ConfigError", "ControlError", "LabError", "LabNotFound", "NatlabError",
    "NotPrivileged", "TopologyError", "UnknownBackend",
    "__version__",
}


def test_the_public_api_is_exactly_the_curated_names():
    assert set(natlab.__all__) == PUBLIC
    assert len(natlab.__all__) == len(PUBLIC), "a name is listed twice"


def test_every_public_name_resolves():
    for name in natlab.__all__:
        assert getattr(natlab, name) is not None, name


def test_an_unknown_name_is_an_attribute_error():
    try:
        natlab.no_such_thing  # noqa: B018
    except AttributeError as err:
        assert "no_such_thing" in str(err)
    else:
        raise AssertionError("natlab.no_such_thing resolved")


def test_importing_natlab_loads_neither_the_labs_nor_the_cli():
    code = ("import sys, natlab; heavy = [m for m in ('pyroute2', 'typer', 'rich', "
            "'natlab.lab', 'natlab.cli', 'natlab.realisers', 'natlab.datapaths') if m in sys.modules]; "
            "print(heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
