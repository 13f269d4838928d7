"""Edgeward enforcer: runs a site's containers on the Docker engine of each host."""

__version__ = "0.1.0"
