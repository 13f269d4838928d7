"""`python -m enforcer` is `edge-enforcer`."""

from enforcer.cli import main

main()
