"""The command line: one module per group of commands, each exposing ``add_parser``."""
