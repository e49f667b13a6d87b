"""`python -m synthrec.cli` = the `synthrec` command."""

from synthrec.cli import main

main()
