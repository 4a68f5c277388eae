"""Published results carry no machine- or time-dependent fields."""

from __future__ import annotations

import json

import pandas as pd

from selfmoa import publish


def test_timing_fields_are_dropped_everywhere_but_weights_stay() -> None:
    doc = {
        "seconds": 3.0,
        "w_s": 1.0,
        "variants": [{"name": "a", "train": {"seconds": 2.0, "seconds_per_pair_epoch": 0.3, "loss": 0.5}}],
        "loop": [{"train_seconds": 9.0, "safety": 0.4, "responses_per_s": 11.0}],
    }
    out = publish.without_timing(doc)
    assert out == {"w_s": 1.0, "variants": [{"name": "a", "train": {"loss": 0.5}}], "loop": [{"safety": 0.4}]}
    frame = pd.DataFrame({"judge": ["x"], "accuracy": [0.9], "seconds": [1.0], "responses_per_s": [5.0]})
    assert list(publish.without_timing(frame).columns) == ["judge", "accuracy"]


def test_publish_writes_the_scrubbed_content(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(publish, "results_dir", lambda profile: tmp_path / profile)
    publish.publish("p", {"a.json": {"total_s": 1, "safety": 0.5}})
    assert json.loads((tmp_path / "p" / "a.json").read_text()) == {"safety": 0.5}
