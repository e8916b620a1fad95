"""``python -m clnp.cli``: the same as ``clnp`` (and ``python -m clnp``)."""

import sys

from .entry import main

sys.exit(main())
