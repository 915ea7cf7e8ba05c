"""Commands: bench_cmd (placeholder)."""

from natlab.cli.app import app  # noqa: F401
