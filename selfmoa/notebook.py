"""Small display helpers for the notebooks (tables and truncated examples)."""

from __future__ import annotations

from typing import Any

MAX_CHARS = 200


def truncate(text: str, n: int = MAX_CHARS) -> str:
    """Shorten text for display; model outputs shown anywhere are truncated."""
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def show_examples(rows: list[dict[str, Any]], keys: list[str], n: int = 3, width: int = MAX_CHARS) -> None:
    """Print up to n rows, each field truncated to `width` characters."""
    for row in rows[:n]:
        for k in keys:
            print(f"{k:>10}: {truncate(row.get(k, ''), width)}")
        print()


def show_dict(d: dict[str, Any]) -> None:
    """Print a flat mapping as aligned key: value lines."""
    width = max((len(str(k)) for k in d), default=0)
    for k, v in d.items():
        print(f"{str(k):>{width}}: {v}")


def table(rows: list[dict[str, Any]], n: int | None = None) -> Any:
    """A pandas DataFrame of rows (first n), with long strings truncated, for notebook display."""
    import pandas as pd

    df = pd.DataFrame(rows[:n] if n else rows)
    for col in df.columns:
        if df[col].dtype == object:
            df[col] = df[col].map(lambda v: truncate(v, 80) if isinstance(v, str) else v)
    return df
