"""`python -m enforcer` is `edge-enforcer`."""

from enforcer.cli.main import main

main()
