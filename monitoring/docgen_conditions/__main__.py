"""``python -m monitoring.docgen_conditions``: rewrite docs/conditions/."""

from __future__ import annotations

import sys

from monitoring.docgen_conditions.pages import main

sys.exit(main())
