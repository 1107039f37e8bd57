"""Summaries (median, min, max) and paired ratios of samples taken in the same round."""

from __future__ import annotations

import statistics
from typing import Any, Sequence


def summary(values: Sequence[float | None]) -> dict[str, Any] | None:
    """Median, min and max of the values that are not None (None when there are none)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def paired_ratios(num: Sequence[float | None], den: Sequence[float | None]) -> list[float | None]:
    """Round-by-round ``num[i] / den[i]``: each ratio compares two windows taken next to each other."""
    out: list[float | None] = []
    for a, b in zip(num, den):
        out.append(a / b if a is not None and b else None)
    return out


def fmt_rate(x: float) -> str:
    """A rate with thousands separators."""
    return f"{x:,.0f}"


def fmt_num(x: float, unit: str) -> str:
    """A value in its unit, compactly."""
    if unit == "/s":
        return fmt_rate(x)
    if unit == "s":
        return f"{x:.3f}"
    if unit == "MB":
        return f"{x:+.2f}" if x < 0 else f"{x:.2f}"
    if unit == "%":
        return f"{x:.2f}"
    return f"{x:.3g}"


def fmt_range(s: dict[str, Any] | None, unit: str) -> tuple[str, str]:
    """(median, "min–max") as text."""
    if s is None:
        return "—", ""
    return fmt_num(s["median"], unit), f"{fmt_num(s['min'], unit)}–{fmt_num(s['max'], unit)}"


def fmt_ratio(s: dict[str, Any] | None) -> str:
    """A ratio summary as "median (min–max)"."""
    if s is None:
        return "—"
    return f"{s['median']:.2f} ({s['min']:.2f}–{s['max']:.2f})"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table, padded so that it also reads well in a terminal."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    sep = "| " + " | ".join("-" * w for w in widths) + " |"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])
