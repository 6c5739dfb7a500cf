"""The wallie subcommands, one module each (cli.py dispatches)."""
