"""Edgeward control: the central service that holds what should run where, and its operator CLI."""
