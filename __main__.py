"""``python -m pykeepalived``: the same command line as the ``pykeepalived`` script."""

from __future__ import annotations

import sys

from pykeepalived.core.shell.cli import main

sys.exit(main())
