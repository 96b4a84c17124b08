"""Subcommands of the ``mhst-tracker`` command line, one module each."""
