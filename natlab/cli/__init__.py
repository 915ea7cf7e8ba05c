"""natlab's command line: thin typer commands over library functions.

Each command module registers its commands on :data:`natlab.cli.app.app`.
Errors from natlab print as one clear line (several configuration errors: a
count, then one line each) and exit 1, without a traceback.
"""

from __future__ import annotations

import sys

from natlab.cli.app import app
from natlab.errors import NatlabError, report

# Command modules register themselves on import.
from natlab.cli import presets_cmd  # noqa: E402,F401
from natlab.cli import bench_cmd  # noqa: E402,F401
from natlab.cli import lab_cmd  # noqa: E402,F401
from natlab.cli import gateway_cmd  # noqa: E402,F401
from natlab.cli import demo_cmd  # noqa: E402,F401
from natlab.cli import matrix_cmd  # noqa: E402,F401
from natlab.cli import bench_lab_cmd  # noqa: E402,F401
from natlab.cli import bench_explore_cmd  # noqa: E402,F401
from natlab.cli import run_cmd  # noqa: E402,F401
from natlab.cli import explore_cmd  # noqa: E402,F401


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except NatlabError as err:
        print(report(err), file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
