"""monitoring-system: a declarative rules-as-code monitoring engine.

The compiler front end is available as a library::

    from monitoring import lint_paths, load_paths, compile_workspace

    report = lint_paths(["rules/"])
    for d in report.diagnostics:
        print(d.location(), d.code, d.message)

and the running engine as ``MonitoringSystem`` (see monitoring/system.py and docs/live.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for type checkers only: the import is lazy (see __getattr__)
    from monitoring.system import MonitoringSystem

__version__ = "0.1.0"

__all__ = ["MonitoringSystem", "__version__", "compile_workspace", "lint_paths", "load_paths"]


def __getattr__(name: str) -> object:
    # Imported lazily so that `import monitoring` stays cheap for the CLI.
    if name == "lint_paths":
        from monitoring.lint.runner import lint_paths

        return lint_paths
    if name == "compile_workspace":
        from monitoring.lint.runner import compile_workspace

        return compile_workspace
    if name == "MonitoringSystem":
        from monitoring.system import MonitoringSystem

        return MonitoringSystem
    if name == "load_paths":
        from monitoring.dsl.loader import load_paths

        return load_paths
    raise AttributeError(f"module 'monitoring' has no attribute {name!r}")
