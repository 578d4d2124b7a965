"""The ``mppagent`` command line (``mppagent --help``)."""

from mppagent.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
