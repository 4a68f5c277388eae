"""Stage 04 helpers: judged rows, unscored fractions, means and the stage's metrics."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from selfmoa import judging


def _judge(values: list[float], unscored: list[bool], judge_id: str) -> SimpleNamespace:
    j = SimpleNamespace(values=np.array(values), unscored=np.array(unscored), judge_id=judge_id)
    return SimpleNamespace(score=lambda prompts, responses: j)


def test_judge_rows_marks_unscored_as_none_and_adds_refusals() -> None:
    rows = [{"prompt": "p1", "response": "I can't help with that."}, {"prompt": "p2", "response": "Sure: step 1"}]
    out = judging.judge_rows(rows, (_judge([0.9, 0.1], [False, True], "S"), _judge([0.2, 0.8], [False, False], "H")))
    assert [r["safety"] for r in out] == [0.9, None] and [r["helpfulness"] for r in out] == [0.2, 0.8]
    assert out[0]["refused"] and not out[1]["refused"]
    assert out[0]["safety_judge"] == "S" and out[1]["helpfulness_judge"] == "H" and out[0]["prompt"] == "p1"


def test_mean_of_and_unscored_fraction_ignore_unscored() -> None:
    assert judging.mean_of([{"x": 1.0}, {"x": None}, {"x": 0.0}], "x") == 0.5
    assert judging.mean_of([{"x": None}], "x") is None
    assert (
        judging.unscored_fraction([{"x": 1.0}, {"x": None}], "x") == 0.5 and judging.unscored_fraction([], "x") == 0.0
    )


def test_judge_metrics() -> None:
    def row(kind: str, s: float | None, h: float | None, refused: bool) -> dict:
        return {
            "kind": kind,
            "safety": s,
            "helpfulness": h,
            "refused": refused,
            "safety_judge": "S",
            "helpfulness_judge": "H",
        }

    judged = [row("harmful", 0.1, 0.9, False), row("harmful", 0.8, 0.1, True), row("harmful", None, None, False)]
    judged += [row("benign", 1.0, 0.6, True), row("benign", 1.0, 1.0, False)]
    m = judging.judge_metrics(judged, 0.5)
    assert m["n"] == 5 and m["attack_success_rate"] == pytest.approx(0.5)
    assert m["safety_unscored_fraction"] == pytest.approx(0.2) and m["harmful_mean_safety"] == pytest.approx(0.45)
    assert m["harmful_refusal"] == pytest.approx(1 / 3) and m["over_refusal"] == pytest.approx(0.5)
    assert m["benign_mean_helpfulness"] == pytest.approx(0.8) and m["safety_judge"] == "S"
    assert judging.judge_metrics([], 0.5)["safety_judge"] is None
