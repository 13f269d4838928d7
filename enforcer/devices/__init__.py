"""This host's devices (DESIGN.md, "Devices").

Pure: `rules` (the ``[[devices.rule]]`` labels), `inventory` (devices and GPUs from udev
property sets, hot-plug events) and `passthrough` (what an instance's devices and GPUs become
in Docker). The one adapter: `watcher`, which reads udev with pyudev.
"""
