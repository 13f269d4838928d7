"""What one application spec may ask for at most (DESIGN.md, "Application spec").

A spec that passes these can neither exhaust an enforcer (a hundred thousand replicas, a
variable that doubles itself thirty times) nor hide what it says (control characters and
bidirectional overrides). Each limit is reported with its path and the limit.
"""

from __future__ import annotations

__all__ = [
    "MAX_ARGS",
    "MAX_CONFIG_ITEMS",
    "MAX_CONTAINERS",
    "MAX_DEVICES",
    "MAX_ENV",
    "MAX_ENV_NAME_LENGTH",
    "MAX_FILE_LENGTH",
    "MAX_IMAGE_LENGTH",
    "MAX_INGRESS",
    "MAX_MOUNTS",
    "MAX_REPLICAS",
    "MAX_SERVICES",
    "MAX_VALUE_LENGTH",
    "MAX_VARIABLES",
    "MAX_VARIABLE_NAME_LENGTH",
    "MAX_VOLUMES",
    "SECRET_VALUE_LENGTH",
    "SYSTEM_VALUE_LENGTH",
]

MAX_SERVICES = 64  # services of one application
MAX_CONTAINERS = 16  # containers of one service
MAX_REPLICAS = 1000  # replicas of one service
MAX_VARIABLES = 256  # variables of one service
MAX_VOLUMES = 64  # volumes of one service
MAX_CONFIG_ITEMS = 256  # files of one config-map volume
MAX_DEVICES = 64  # device labels of one placement
MAX_INGRESS = 64  # published ports of one service
MAX_ENV = 512  # env entries of one container
MAX_MOUNTS = 64  # mounts of one container
MAX_ARGS = 4096  # words of one cmd or entrypoint

MAX_IMAGE_LENGTH = 512  # an image reference (Docker's own: 255 for the name, 128 for a tag)
MAX_VARIABLE_NAME_LENGTH = 128
MAX_ENV_NAME_LENGTH = 256

# Lengths after ${NAME} expansion. An env value or argument longer than Linux's MAX_ARG_STRLEN
# (32 pages) cannot reach a process at all; a config-map file may be as large as a spec.
MAX_VALUE_LENGTH = 128 * 1024
MAX_FILE_LENGTH = 1024 * 1024
# What a reference counts for when its value is not known yet. A system variable (a site
# name, a host id, an instance id) is never longer. A secret's key is usually a token, a
# password or a certificate; it may be longer (a secret holds up to 64 KiB in all), and a value
# then too long for Linux fails only its instance when it starts. Counting it at all is what
# stops a variable that doubles a secret thirty times.
SYSTEM_VALUE_LENGTH = 512
SECRET_VALUE_LENGTH = 4096
