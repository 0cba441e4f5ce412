"""Placeholder until its implementation lands (owned by the condition-library work)."""

from __future__ import annotations

from typing import Any

ANOMALY_FUNCTIONS: dict[str, Any] = {}
