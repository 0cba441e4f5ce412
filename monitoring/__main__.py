"""``python -m monitoring``: the same as the ``monitoring`` command."""

from __future__ import annotations

import sys

from monitoring.cli import main

sys.exit(main())
