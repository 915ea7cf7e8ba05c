"""Labs: a topology realised in network namespaces, and taken down again.

``up(spec_or_path) -> Lab`` (a context manager), ``down(name)``, ``down_all()``,
``attach(name)``; :mod:`natlab.realisers.netns.state` is the state file other commands read.
"""

from natlab.realisers.netns.lab import Lab, attach, up
from natlab.realisers.netns.build import down, down_all
from natlab.realisers.netns.state import LabState, list_labs, resolve_lab

__all__ = ["Lab", "LabState", "attach", "down", "down_all", "list_labs", "resolve_lab", "up"]
