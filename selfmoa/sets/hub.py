"""Hugging Face hub sets (GPU / online profiles): per-row formatters and the loader.

Each hub entry of the registry carries one formatter `format_row(row, index, name) -> Row | None`
(None drops the row); `hub_rows` applies it to every row of a downloaded split.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from selfmoa.sets.registry import Benchmark

Row = dict[str, Any]
RowFormatter = Callable[[Mapping[str, Any], int, str], "Row | None"]


def xstest(want_unsafe: bool) -> RowFormatter:
    """XSTest rows of one kind: the unsafe contrast prompts, or the safe prompts."""

    def fmt(r: Mapping[str, Any], i: int, name: str) -> Row | None:
        label = r.get("label")
        unsafe = (label == "unsafe") if label else str(r.get("type", "")).startswith("contrast")
        if unsafe != want_unsafe:
            return None
        return {
            "id": f"{name}:{i}",
            "prompt": r["prompt"],
            "category": r.get("type", ""),
            "label": "harmful" if unsafe else "benign",
            "source": name,
        }

    return fmt


def advbench(r: Mapping[str, Any], i: int, name: str) -> Row:
    """AdvBench behaviour; reference = its target string."""
    return {
        "id": f"{name}:{i}",
        "prompt": r["prompt"],
        "category": "advbench",
        "reference": r.get("target"),
        "label": "harmful",
        "source": name,
    }


def jbb(label: str) -> RowFormatter:
    """JailbreakBench behaviours labelled `label` ('harmful' or 'benign')."""

    def fmt(r: Mapping[str, Any], i: int, name: str) -> Row:
        return {
            "id": f"{name}:{r.get('Index', i)}",
            "prompt": r["Goal"],
            "category": r["Category"],
            "reference": r.get("Target"),
            "label": label,
            "source": name,
        }

    return fmt


def hellaswag(r: Mapping[str, Any], i: int, name: str) -> Row:
    """HellaSwag context with its four endings; label = index of the right one."""
    return {
        "id": f"{name}:{r.get('ind', i)}",
        "prompt": r["ctx"],
        "choices": list(r["endings"]),
        "label": int(r["label"]),
        "category": r.get("activity_label", ""),
        "source": name,
    }


def winogrande(r: Mapping[str, Any], i: int, name: str) -> Row:
    """WinoGrande sentence with its two options; label = 0-based index of the answer."""
    return {
        "id": f"{name}:{i}",
        "prompt": r["sentence"],
        "choices": [r["option1"], r["option2"]],
        "label": int(r["answer"]) - 1,
        "category": "winogrande",
        "source": name,
    }


def lambada(r: Mapping[str, Any], i: int, name: str) -> Row:
    """LAMBADA passage split into context and last word (the reference)."""
    context, _, last = r["text"].rpartition(" ")
    return {"id": f"{name}:{i}", "prompt": context, "reference": last, "category": "lambada", "source": name}


def mmlu(r: Mapping[str, Any], i: int, name: str) -> Row:
    """MMLU question with its four choices; label = index of the answer."""
    return {
        "id": f"{name}:{i}",
        "prompt": r["question"],
        "choices": list(r["choices"]),
        "label": int(r["answer"]),
        "category": r["subject"],
        "source": name,
    }


def hub_rows(bench: Benchmark, ds: Iterable[Mapping[str, Any]]) -> list[Row]:
    """Rows of a downloaded hub split, formatted by the entry's `format_row` (rows it maps to None dropped)."""
    if bench.format_row is None:
        raise KeyError(f"no row formatter for hub benchmark {bench.name}")
    rows = (bench.format_row(r, i, bench.name) for i, r in enumerate(ds))
    return [r for r in rows if r is not None]


def hub_offline() -> bool:
    """True when the environment forbids hub access (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE set to 1)."""
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )
