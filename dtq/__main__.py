"""`python -m dtq` runs the dtq command."""

from dtq.cli.main import run

run()
