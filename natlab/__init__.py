"""natlab: a testbed that emulates any NAT.

The public API is re-exported here; see README.md for the tour.
"""

from natlab.engine import *  # noqa: F401,F403
from natlab.engine import __all__ as _engine_all
from natlab.errors import (
    BackendUnavailable,
    ConfigError,
    ControlError,
    LabError,
    LabNotFound,
    NatlabError,
    NotPrivileged,
    TopologyError,
)

__version__ = "0.1.0"
__all__ = [
    *_engine_all,
    "BackendUnavailable", "ConfigError", "ControlError", "LabError", "LabNotFound",
    "NatlabError", "NotPrivileged", "TopologyError", "__version__",
]
