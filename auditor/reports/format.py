"""Formatting shared by the report's HTML and its charts: escaping, numbers, times."""

from __future__ import annotations

import html
from datetime import datetime, timezone
from typing import Any


def escape(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def number(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}"


def when(value: datetime | None) -> str:
    if value is None:
        return "–"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
