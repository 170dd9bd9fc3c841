"""`python -m jobs.cli`: the `phonebatch` command."""

from jobs.cli.main import main

main()
