"""Scenario files: steps run on a lab (netns, memory or Docker), with expectations and reports.

``natlab run FILE...`` and ``pytest scenarios/`` use :func:`load` then
:func:`run_scenario`; see ``scenarios/README.md`` for the file format.
"""

from natlab.scenario.load import load
from natlab.scenario.model import Scenario, Step
from natlab.scenario.report import ScenarioReport, StepReport, render_text, write_json, write_junit
from natlab.scenario.runner import run as run_scenario
from natlab.scenario.runner import skip_reason

__all__ = ["Scenario", "ScenarioReport", "Step", "StepReport", "load", "render_text", "run_scenario",
           "skip_reason", "write_json", "write_junit"]
