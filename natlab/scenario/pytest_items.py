"""pytest collects scenario files as test items (``pytest scenarios/``).

Registered through the ``pytest11`` entry point ``natlab_scenarios``. A YAML
file with top-level ``topology:`` and ``steps:`` keys becomes one item per
backend: ``scenario-name[netns]``, ``scenario-name[memory]``. Without
``--natlab-backend`` each scenario runs on netns and in memory (those its
``backends:`` allows); with it, only there. An item that cannot run (not root,
or a ``run`` step in memory) is skipped with the reason, never silently. A
failing item shows the scenario report: the step, expected against seen, the
mapping tables and recent events.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

_TOP_KEY = {key: re.compile(rf"^{key}\s*:", re.M) for key in ("topology", "steps")}


def _looks_like_scenario(path: Path) -> bool:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return False
    return all(p.search(text) for p in _TOP_KEY.values())


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> Optional[pytest.Collector]:
    if file_path.suffix in (".yaml", ".yml") and _looks_like_scenario(file_path):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


def _chosen_backends(config: pytest.Config) -> tuple[str, ...]:
    try:
        chosen = config.getoption("--natlab-backend")
    except ValueError:
        chosen = None
    from natlab.realisers.registry import names

    return (chosen,) if chosen else names(scenario_default=True)


class ScenarioFile(pytest.File):
    """One scenario file: validated at collection, so a typo is a collection error with file:line."""

    def collect(self) -> Iterator[pytest.Item]:
        from natlab.errors import ConfigError
        from natlab.scenario import load
        from natlab.realisers.registry import get
        from natlab.scenario.runner import static_skip_reason

        try:
            scn = load(self.path)
        except ConfigError as err:
            raise self.CollectError(f"natlab scenario invalid: {err.message}") from None
        from natlab.pytest_datapaths import chosen as chosen_datapaths

        asked = chosen_datapaths(self.config)
        for backend in _chosen_backends(self.config):
            if backend not in scn.backends:
                continue
            kernel = get(backend).needs_root
            for datapath, missing in (asked if kernel and asked else ((None, None),)):
                label = backend if datapath is None else f"{backend}/{datapath}"
                item = ScenarioItem.from_parent(self, name=f"{scn.name}[{label}]")
                item.scenario, item.backend, item.datapath = scn, backend, datapath
                if kernel:
                    item.add_marker(pytest.mark.netns)
                if (reason := static_skip_reason(scn, backend)) is not None:
                    item.add_marker(pytest.mark.skip(reason=reason))  # reported at the scenario file
                elif missing:
                    item.add_marker(pytest.mark.skip(reason=f"the {datapath} datapath is unavailable: {missing}"))
                yield item


def _run_on(scenario: Any, backend: str, datapath: Optional[str]) -> Any:
    """Run a scenario with every gateway on ``datapath`` (None: as the topology says)."""
    import os

    from natlab.datapaths.registry import ENV
    from natlab.scenario import run_scenario

    if datapath is None:
        return run_scenario(scenario, backend)
    before = os.environ.get(ENV)
    os.environ[ENV] = datapath
    try:
        return run_scenario(scenario, backend)
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before


class ScenarioFailed(Exception):
    def __init__(self, report: Any) -> None:
        super().__init__(report.reason)
        self.report = report


class ScenarioItem(pytest.Item):
    scenario: Any
    backend: str
    datapath: Optional[str] = None
    """The gateways' datapath (``--natlab-datapath``); None: each gateway's own."""

    def runtest(self) -> None:
        from natlab.pytest_plugin import tier_skip_reason
        from natlab.scenario import skip_reason
        from natlab.realisers.registry import unavailable

        if self.backend in self.scenario.backends and (missing := unavailable(self.backend)):
            pytest.skip(tier_skip_reason(self.backend, missing))
        reason = skip_reason(self.scenario, self.backend)
        if reason:
            pytest.skip(reason)
        report = _run_on(self.scenario, self.backend, self.datapath)
        self.user_properties.append(("natlab_report", report.to_dict()))
        if report.status == "skipped":
            pytest.skip(report.reason)
        if not report.ok:
            raise ScenarioFailed(report)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        from natlab.scenario import render_text

        if isinstance(excinfo.value, ScenarioFailed):
            return render_text(excinfo.value.report, verbose=True)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int, str]:
        # A line number, never None: a skip marker reports at the item's location,
        # and pytest asserts it has a line (else INTERNALERROR as non-root).
        label = self.backend if self.datapath is None else f"{self.backend}/{self.datapath}"
        return self.path, 0, f"scenario {self.scenario.name} [{label}]"
