"""``python -m clnp`` (and ``torchrun ... -m clnp run ...``): the command-line interface."""

import sys

from .cli import main

sys.exit(main())
