"""`python -m pipeline` runs the consolidate command."""

from .cli import cli

cli(prog_name="consolidate")
