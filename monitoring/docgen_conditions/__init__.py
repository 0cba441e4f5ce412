"""Generated pages of the condition library: one per family, with plots from real runs.

``docs/conditions/{thresholds,trends,anomalies,composites}.md`` and their SVG
figures under ``docs/conditions/img/`` are generated, not written: each page's
examples are compiled by the real compiler (DSL and seed YAML, checked to mean
the same), run by the real evaluator over seeded synthetic data, and plotted.
So a page cannot drift from the code: ``python -m monitoring.docgen_conditions``
rewrites the folder and a test fails when the committed files differ from what
would be generated.

Modules: :mod:`.pages` (the driver), :mod:`.example` (compiling and running
examples), :mod:`.plot` (figures), :mod:`.markdown` (shared page pieces), and
one module per page.
"""
