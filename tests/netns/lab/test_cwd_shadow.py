"""A folder named ``natlab`` where the user stands cannot shadow the installed natlab.

After ``git clone`` into ``~`` the usual working directory holds ``./natlab``; an
editable install then loses to it unless child programs start with ``python -P``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from natlab.lab import up


from natlab.realisers.netns import procs
from labkit import udp_source_seen

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("needs_daemon"), pytest.mark.any_datapath]


def test_child_python_ignores_a_natlab_folder_in_the_cwd(tmp_path) -> None:
    import natlab

    (tmp_path / "natlab").mkdir()
    interpreter = procs.python_module("natlab.hostprogs.probe")[:-2]  # python -P, without "-m module"
    code = "import natlab; print(natlab.__file__)"
    done = subprocess.run([*interpreter, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.stdout.strip() == natlab.__file__, done.stderr


def test_gateways_start_from_a_folder_holding_an_empty_natlab(topology, lab_name, tmp_path,
                                                                monkeypatch) -> None:
    (tmp_path / "natlab").mkdir()
    monkeypatch.chdir(tmp_path)
    with up(topology("one-home")) as lab:
        gw = next(iter(lab.state.gateways.values()))
        assert gw["pid"] and procs.is_ours(gw["pid"], gw["pid_start"], gw["spec_path"])
        wan = next(h for h, e in lab.state.hosts.items()
                   if lab.state.networks[e["network"]]["gateway"] is None)
        inside = next(h for h in lab.state.hosts if h != wan)
        src, _ = udp_source_seen(lab, inside, wan, str(lab.host_address(wan)))
        assert src in gw["pool"]


def test_python_module_keeps_this_interpreter_and_safe_path() -> None:
    assert procs.python_module("natlab.hostprogs.probe", "listen") == [sys.executable, "-P", "-m",
                                                              "natlab.hostprogs.probe", "listen"]
