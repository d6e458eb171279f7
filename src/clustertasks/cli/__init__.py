"""The command line: ``clustertasks serve`` and client commands."""
