"""Pure glue of the stage notebooks: pair inputs, means, eval row shaping."""

import math

from selfmoa import loop, plotting


def _row(kind: str, prompt: str, s: float | None, h: float | None, response: str = "r") -> dict:
    return {"kind": kind, "prompt": prompt, "response": response, "safety": s, "helpfulness": h, "refused": False}


def test_pair_inputs_sets_benign_safety_and_adds_one_foil_per_benign_prompt() -> None:
    judged = [_row("harmful", "h1", 0.2, 0.9), _row("benign", "b1", 0.0, 0.8, "a"), _row("benign", "b1", 0.0, 0.6, "b")]
    rows = loop.pair_inputs(judged, label_noise=0.0, seed=0, benign_foil=True)
    assert rows[0]["safety"] == 0.2 and rows[0]["prompt_kind"] == "harmful" and rows[0]["helpful"] == 0.9
    assert all(r["safety"] == 1.0 for r in rows if r["kind"] == "benign")
    foils = [r for r in rows if r.get("foil")]
    assert len(foils) == 1 and foils[0]["prompt"] == "b1" and foils[0]["helpful"] == 0.0 and foils[0]["refused"]
    assert len(loop.pair_inputs(judged, 0.0, 0, benign_foil=False)) == 3


def test_pair_inputs_keeps_unscored_and_flips_with_noise() -> None:
    judged = [_row("harmful", f"h{i}", 0.0, 0.5) for i in range(50)] + [_row("harmful", "u", None, None)]
    clean = loop.pair_inputs(judged, 0.0, 0, benign_foil=False)
    assert clean[-1]["safety"] is None
    noisy = loop.pair_inputs(judged, 0.4, 0, benign_foil=False)
    flipped = sum(r["safety"] == 1.0 for r in noisy[:50])
    assert 10 <= flipped <= 30
    assert noisy[-1]["safety"] is None or math.isnan(noisy[-1]["safety"])


def test_mean_of_ignores_unscored() -> None:
    assert loop.mean_of([{"x": 1.0}, {"x": None}, {"x": 0.0}], "x") == 0.5
    assert loop.mean_of([{"x": None}], "x") is None


def test_models_frame_and_headline() -> None:
    m = {
        "safety": 0.5,
        "safety_ci": [0.4, 0.6],
        "overrefusal": 0.1,
        "overrefusal_ci": [0.0, 0.2],
        "helpfulness": 0.7,
        "helpfulness_ci": [0.6, 0.8],
        "n_pairs": 3,
    }
    df = plotting.models_frame({"base": m, "selfmoa": m})
    assert len(df) == 6 and set(df["metric"]) == {"safety", "overrefusal", "helpfulness"}
    text = plotting.headline_markdown({"base": m})
    assert "| base | 0.500 [0.400, 0.600] |" in text and text.rstrip().endswith("| 3 |")
