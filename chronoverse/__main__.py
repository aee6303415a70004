"""Entry point: `python -m chronoverse` runs the command-line interface."""

from chronoverse.cli import main

main()
