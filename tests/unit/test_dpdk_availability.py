"""An unavailable DPDK datapath says exactly what is missing, before anything is created."""

from __future__ import annotations

import importlib.util

import pytest

from natlab.datapaths import registry
from natlab.datapaths.dpdk import availability, binding


def test_without_cffi_it_names_the_python_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "cffi" else real(name, *a))
    assert "cffi" in registry.unavailable("dpdk") and "natlab[dpdk]" in registry.unavailable("dpdk")


def test_without_libdpdk_dev_and_no_built_module_it_names_the_apt_packages(monkeypatch: pytest.MonkeyPatch,
                                                                           tmp_path) -> None:
    monkeypatch.setenv(binding.BUILD_ENV, str(tmp_path))
    monkeypatch.setattr(binding, "pkg_config", lambda: None)
    real = importlib.util.find_spec  # cffi present or not (the dpdk extra), libdpdk-dev is what is named
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "cffi" else real(name, *a))
    why = availability.unavailable()
    assert "libdpdk-dev" in why and "apt-get install" in why


def test_without_the_virtual_port_drivers_it_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binding, "missing", lambda: None)
    monkeypatch.setattr(availability, "pmd_dirs", lambda: [])
    assert "librte_net_af_xdp" in availability.unavailable()


def test_as_a_user_it_asks_for_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binding, "missing", lambda: None)
    monkeypatch.setattr(availability, "pmds", lambda: {"af_packet"})
    monkeypatch.setattr(availability.os, "geteuid", lambda: 1000)
    assert "needs root" in availability.unavailable()


def test_the_registry_finds_it_by_name() -> None:
    datapath = registry.get("dpdk")
    assert datapath.name == "dpdk" and not datapath.in_process
