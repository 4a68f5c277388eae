"""Keeping training prompts away from evaluation prompts: exact overlap (ids, normalised text) and MiniLM near-duplicates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from selfmoa.text import text_key

Row = dict[str, Any]


def drop_eval_overlap(rows: list[Row], eval_set: list[Row]) -> list[Row]:
    """Drop rows whose id or normalised text occurs in `eval_set`, and duplicates within `rows`."""
    bad_ids = {r["id"] for r in eval_set}
    bad_keys = {text_key(r["prompt"]) for r in eval_set}
    bad_keys |= {text_key(r["behavior"]) for r in eval_set if r.get("behavior")}
    kept, seen = [], set()
    for r in rows:
        key = text_key(r["prompt"])
        if r["id"] in bad_ids or key in bad_keys or key in seen:
            continue
        seen.add(key)
        kept.append(r)
    return kept


def _texts(rows: list[Row]) -> list[str]:
    """The request itself, without HarmBench context strings."""
    return [r.get("behavior") or r["prompt"] for r in rows]


def _summary(sims: Any, train_rows: list[Row], eval_rows: list[Row], threshold: float, drop: bool) -> dict[str, Any]:
    """Report of one train x eval cosine matrix (see `contamination_report`)."""
    report: dict[str, Any] = {"n_train": len(train_rows), "n_eval": len(eval_rows), "threshold": threshold}
    if not train_rows or not eval_rows:
        report.update(max_cosine=float("nan"), closest_train="", closest_eval="", n_eval_near_dup=0, n_train_near_dup=0)
        if drop:
            report["kept_train"] = list(train_rows)
        return report
    i, j = divmod(int(sims.argmax()), sims.shape[1])
    above = sims > threshold
    report.update(
        max_cosine=float(sims[i, j]),
        closest_train=_texts(train_rows[i : i + 1])[0][:200],
        closest_eval=_texts(eval_rows[j : j + 1])[0][:200],
        n_eval_near_dup=int(above.any(axis=0).sum()),
        n_train_near_dup=int(above.any(axis=1).sum()),
    )
    if drop:
        report["kept_train"] = [r for r, bad in zip(train_rows, above.any(axis=1), strict=True) if not bad]
    return report


def _cosines(train_rows: list[Row], eval_rows: list[Row]) -> Any:
    from selfmoa.embeddings import cosine_matrix, embed

    if not train_rows or not eval_rows:
        return None
    return cosine_matrix(embed(_texts(train_rows)), embed(_texts(eval_rows)))


def contamination_report(
    train_rows: list[Row], eval_rows: list[Row], threshold: float = 0.9, drop: bool = False
) -> dict[str, Any]:
    """How close training prompts come to eval prompts (MiniLM cosine of the requests).

    HarmBench contextual rows are compared by their behaviour text, not their long context string.

    Returns:
        dict with `n_train`, `n_eval`, `threshold`, `max_cosine`, `closest_train`, `closest_eval` (both
        truncated to 200 characters), `n_eval_near_dup` (eval rows with a train row above threshold),
        `n_train_near_dup`, and with `drop=True` also `kept_train` (train rows at or below threshold).
    """
    return _summary(_cosines(train_rows, eval_rows), train_rows, eval_rows, threshold, drop)


def contamination_by_set(
    train_rows: list[Row], eval_sets: Mapping[str, list[Row]], threshold: float = 0.9
) -> dict[str, dict[str, Any]]:
    """`contamination_report` of `train_rows` against each eval set, embedding every row once.

    Args:
        train_rows: rows a policy can be trained on.
        eval_sets: set name -> its rows.
        threshold: MiniLM cosine above which a pair counts as a near-duplicate.

    Returns:
        set name -> the report of `contamination_report` for that set.
    """
    names = list(eval_sets)
    everything = [r for name in names for r in eval_sets[name]]
    sims = _cosines(train_rows, everything)
    out, start = {}, 0
    for name in names:
        stop = start + len(eval_sets[name])
        part = sims[:, start:stop] if sims is not None and stop > start else None
        out[name] = _summary(part, train_rows, eval_sets[name], threshold, drop=False)
        start = stop
    return out
