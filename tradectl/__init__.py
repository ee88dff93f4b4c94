"""tradectl: the command line and what the CLI and the daemon share."""

__version__ = "0.1.0"
