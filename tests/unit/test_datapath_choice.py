"""Which datapath a lab gateway runs on: the topology key, its options, and --datapath over both."""

from __future__ import annotations

from pathlib import Path

import pytest

from natlab.datapaths import registry
from natlab.errors import ConfigError, UnknownBackend
from natlab.realisers.netns.build import gateway_spec
from natlab.topology import from_data, load

BASE = {
    "name": "dp", "networks": {"wan": {"subnet": "203.0.113.0/24"}, "lan": {"subnet": "192.168.5.0/24"}},
    "hosts": {"a": {"network": "lan"}},
}


def topo(**gateway):
    return from_data({**BASE, "gateways": {"gw": {"behaviour": "full-cone", "inside": "lan", "outside": "wan",
                                                  **gateway}}})


def spec_of(t, tmp_path):
    return gateway_spec(t, t.gateways[0], str(tmp_path))


def without_kernel_cache(monkeypatch) -> None:
    """This installation as one without python3-nftables (the registry's own 'not installed')."""
    monkeypatch.setitem(registry.DATAPATHS, "kernel-cache", lambda **kw: registry._Missing(
        "kernel-cache", "natlab.datapaths.kernelcache", "python3-nftables is not installed"))


def test_the_default_datapath_is_kernel_cache_and_nfqueue_stays_a_choice(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(registry.ENV, raising=False)
    assert registry.DEFAULT == "kernel-cache"
    spec = spec_of(topo(), tmp_path)
    expected = "kernel-cache" if registry.unavailable("kernel-cache") is None else "nfqueue"
    assert spec.datapath == expected
    assert spec_of(topo(datapath="nfqueue"), tmp_path).datapath == "nfqueue"


def test_where_kernel_cache_cannot_run_the_default_falls_back_to_nfqueue_with_one_warning_line(
        tmp_path, monkeypatch, capsys) -> None:
    from natlab.realisers.netns.build import datapaths_ready

    monkeypatch.delenv(registry.ENV, raising=False)
    without_kernel_cache(monkeypatch)
    assert spec_of(topo(), tmp_path).datapath == "nfqueue"
    datapaths_ready(topo())
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "warning" in lines[0] and "kernel-cache is unavailable" in lines[0]
    assert "python3-nftables is not installed" in lines[0] and "--datapath nfqueue" in lines[0]
    datapaths_ready(topo(datapath="nfqueue"))  # chosen by name: nothing to warn about
    assert capsys.readouterr().err == ""


def test_kernel_cache_named_where_it_cannot_run_is_refused_not_replaced(monkeypatch) -> None:
    from natlab.errors import BackendUnavailable
    from natlab.realisers.netns.build import datapaths_ready

    monkeypatch.delenv(registry.ENV, raising=False)
    without_kernel_cache(monkeypatch)
    with pytest.raises(BackendUnavailable, match="cannot run on the kernel-cache datapath") as err:
        datapaths_ready(topo(datapath="kernel-cache"))
    assert "python3-nftables" in str(err.value.got) and "--datapath" in err.value.hint
    monkeypatch.setenv(registry.ENV, "kernel-cache")
    with pytest.raises(BackendUnavailable, match="kernel-cache") as err:
        datapaths_ready(topo())
    assert err.value.hint == "--datapath kernel-cache was given"


def test_the_topology_key_chooses_the_datapath_and_its_options_reach_the_spec(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(registry.ENV, raising=False)
    spec = spec_of(topo(datapath="kernel-cache", kernel_cache={"quantum": 0.25}), tmp_path)
    assert spec.datapath == "kernel-cache" and spec.extra == {"kernel_cache": {"quantum": 0.25}}
    dpdk = spec_of(topo(datapath="dpdk", dpdk={"workers": 2}), tmp_path)
    assert dpdk.extra["dpdk"]["workers"] == 2 and dpdk.extra["dpdk"]["driver"] == "auto"


def test_forcing_a_datapath_overrides_every_gateway_key(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(registry.ENV, "kernel-cache")
    spec = spec_of(topo(datapath="nfqueue"), tmp_path)
    assert spec.datapath == "kernel-cache" and spec.extra == {"kernel_cache": {"quantum": 1.0}}


def test_a_forced_unknown_datapath_says_which_ones_exist(monkeypatch) -> None:
    monkeypatch.setenv(registry.ENV, "kernel-cach")
    with pytest.raises(UnknownBackend, match="unknown datapath") as err:
        registry.chosen(None)
    assert "did you mean 'kernel-cache'" in err.value.hint


def test_a_wrong_datapath_key_is_an_error_with_file_line_and_the_choices(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("name: dp\nnetworks:\n  wan: {subnet: 203.0.113.0/24}\n  lan: {subnet: 192.168.5.0/24}\n"
                    "gateways:\n  gw:\n    behaviour: full-cone\n    inside: lan\n    outside: wan\n"
                    "    datapath: nfq\n    kernel_cache: {quantum: 0}\n")
    with pytest.raises(ConfigError) as err:
        load(path)
    text = str(err.value)
    assert f"{path}:10" in text and "nfqueue" in text and "kernel-cache" in text
    assert f"{path}:11" in text and "quantum" in text


def test_a_datapath_whose_package_is_missing_says_so_instead_of_failing_to_import() -> None:
    missing = registry._lazy("warp", "natlab.datapaths.warp", "WarpDatapath")()
    assert missing.name == "warp" and "natlab.datapaths.warp cannot be imported" in missing.unavailable()
    with pytest.raises(UnknownBackend, match="not available"):
        missing.gateway(None, None, None)


def test_every_lab_datapath_is_in_the_registry_and_the_topology_schema() -> None:
    from natlab.topology.schema import topology_schema

    schema = topology_schema()
    allowed = schema["$defs"]["GatewayEntry"]["properties"]["datapath"]["anyOf"][0]["enum"]
    assert tuple(allowed) == registry.LAB_DATAPATHS
    assert set(registry.LAB_DATAPATHS) <= set(registry.names())


def test_a_forced_datapath_carries_options_over_every_gateways_own_block(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(registry.ENV, registry.choose("dpdk:workers=2:driver=af_packet"))
    assert registry.chosen("nfqueue") == "dpdk"
    spec = spec_of(topo(dpdk={"workers": 1, "quantum": 0.5}), tmp_path)
    assert spec.datapath == "dpdk"
    assert spec.extra["dpdk"]["workers"] == 2 and spec.extra["dpdk"]["driver"] == "af_packet"
    assert spec.extra["dpdk"]["quantum"] == 0.5  # what --datapath does not set stays the gateway's
    monkeypatch.setenv(registry.ENV, "dpdk")
    assert spec_of(topo(dpdk={"workers": 1}), tmp_path).extra["dpdk"]["workers"] == 1


def test_a_forced_choice_reads_values_as_yaml_and_prints_back_the_same() -> None:
    assert registry.choose(" dpdk : workers=2 : idle=busy ") == "dpdk:workers=2:idle=busy"
    assert registry.choose("kernel-cache:quantum=0.5") == "kernel-cache:quantum=0.5"
    assert registry.forced_options("dpdk") == {}  # nothing forced


def test_bad_forced_options_are_all_named_at_once_with_the_key_and_what_is_allowed() -> None:
    with pytest.raises(ConfigError) as err:
        registry.choose("dpdk:workers=9:drvier=af_xdp:idle")
    text = str(err.value)
    assert "dpdk.workers" in text and "9" in text
    assert "dpdk.drvier" in text and "driver" in text  # the hint lists the real keys
    assert "KEY=VALUE" in text and "idle" in text


def test_a_datapath_without_options_refuses_them_and_a_misspelt_name_is_caught_first() -> None:
    with pytest.raises(ConfigError, match="nfqueue datapath takes no options"):
        registry.choose("nfqueue:workers=2")
    with pytest.raises(UnknownBackend, match="did you mean 'dpdk'"):
        registry.choose("dpkd:workers=2")
