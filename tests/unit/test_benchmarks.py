"""Pure helpers of the benchmark suite: records, the results file, token counting, pairs, parsing."""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np
import pytest

from benchmarks.common import (
    PeakRSS,
    check,
    cpu_info,
    interleave,
    merge_results,
    one_row_linears,
    record,
    speedup,
    tree_rss,
    write_results,
)
from benchmarks.e2e import selfmoa_command
from benchmarks.generation import compute_limit, count_until_eos, same_prefix_share, tokens_from_text
from benchmarks.judging import agreement, judge_items, parse_yes_no, parsed_value
from benchmarks.run import DEFAULT, parse_names, summary_line
from benchmarks.training import preference_pairs, training_flops


def _rec(value: float) -> dict:
    return record(
        baseline=1.0,
        project=value,
        ratio=value,
        ratio_definition="p / b",
        unit="x/s",
        checks=[check("speedup", value, ">=", 2.0)],
        details={},
    )


def test_check_directions_and_missing_value() -> None:
    assert check("a", 3.0, ">=", 2.0)["met"] and not check("a", 1.0, ">=", 2.0)["met"]
    assert check("b", 0.5, "<=", 0.75)["met"] and not check("b", 0.8, "<=", 0.75)["met"]
    assert check("c", None, ">=", 1.0)["met"] is False
    with pytest.raises(ValueError, match="op must be"):
        check("d", 1.0, "==", 1.0)


def test_speedup_orients_by_better_direction() -> None:
    assert speedup(10.0, 50.0) == 5.0  # throughput: higher is better
    assert speedup(1.5, 0.5, higher_is_better=False) == 3.0  # seconds: lower is better
    assert speedup(0.0, 5.0) is None


def test_record_target_and_met() -> None:
    rec = record(
        baseline=2.0,
        project=1.0,
        ratio=2.0,
        ratio_definition="b / p",
        unit="s",
        checks=[check("s", 1.0, "<=", 0.75), check("speedup", 2.0, ">=", 2.0)],
        details={"k": 1},
    )
    assert rec["target"] == "s <= 0.75; speedup >= 2"
    assert rec["met"] is False
    assert _rec(3.0)["met"] is True
    no_target = record(baseline=1, project=1, ratio=1, ratio_definition="", unit="", checks=[], details={})
    assert no_target["target"] is None and no_target["met"] is None


def test_merge_keeps_other_benchmarks_and_replaces_rerun_ones() -> None:
    old_meta, new_meta = {"timestamp": "t0", "git_commit": "a"}, {"timestamp": "t1", "git_commit": "b"}
    first = merge_results(None, old_meta, {"generation": _rec(1.0), "judging": _rec(5.0)})
    merged = merge_results(first, new_meta, {"generation": _rec(3.0)})
    assert merged["timestamp"] == "t1" and merged["git_commit"] == "b"
    assert merged["benchmarks"]["generation"]["project"] == 3.0
    assert merged["benchmarks"]["generation"]["run"] == new_meta
    assert merged["benchmarks"]["judging"]["project"] == 5.0
    assert merged["benchmarks"]["judging"]["run"] == old_meta


def test_write_results_merges_into_the_file(tmp_path) -> None:
    path = tmp_path / "results.json"
    write_results(path, {"timestamp": "t0"}, {"training": _rec(1.0)})
    write_results(path, {"timestamp": "t1"}, {"e2e": {**_rec(2.0), "value": np.float64(0.5)}})
    data = json.loads(path.read_text())
    assert set(data["benchmarks"]) == {"training", "e2e"}
    assert data["benchmarks"]["e2e"]["value"] == 0.5
    assert not list(tmp_path.glob(".*.tmp"))


def test_interleave() -> None:
    assert interleave([1, 2, 3], ["a"]) == [1, "a", 2, 3]
    assert interleave([], ["a", "b"]) == ["a", "b"]


def test_peak_rss_sees_a_temporary_allocation() -> None:
    before = tree_rss(os.getpid())
    assert before > 10 * 2**20
    with PeakRSS(interval=0.01) as rss:
        block = b"\x01" * (64 * 2**20)  # every byte written, so its pages are resident (calloc may map zero pages)
        time.sleep(0.1)
        del block
    assert rss.peak_bytes >= before + 48 * 2**20


def test_token_counting() -> None:
    assert tokens_from_text(10, 64) == 11  # stopped early: the EOS token was generated too
    assert tokens_from_text(64, 64) == 64  # hit the limit: no EOS
    assert count_until_eos([5, 6, 2, 0, 0], {2}) == 3
    assert count_until_eos([5, 6, 7], {2}) == 3


def test_same_prefix_share() -> None:
    a = [[1, 2, 3], [1, 2, 3], list(range(20))]
    b = [[1, 2, 3], [1, 2, 4], [*range(16), 99, 98]]
    assert same_prefix_share(a, b, k=16) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="equally long"):
        same_prefix_share(a, b[:2])


def test_preference_pairs_directions() -> None:
    rows = [
        {"id": "h", "prompt": "make a weapon", "kind": "harmful", "answer": "Step 1", "category": "weapons"},
        {"id": "b", "prompt": "bake bread", "kind": "benign", "answer": "Mix flour", "category": "cooking"},
    ]
    harmful, benign = preference_pairs(rows)
    assert harmful["rejected"] == "Step 1" and harmful["chosen"] != "Step 1" and harmful["safety_margin"] == 1.0
    assert benign["chosen"] == "Mix flour" and benign["rejected"] != "Mix flour" and benign["safety_margin"] == 0.0
    with pytest.raises(ValueError, match="kind must be"):
        preference_pairs([{**rows[0], "kind": "other"}])


def test_training_flops() -> None:
    assert training_flops(100, 10) == 8000.0


def test_parse_yes_no_and_value() -> None:
    assert parse_yes_no("Yes, it is safe.") == "yes"
    assert parse_yes_no("Answer: NO.") == "no"
    assert parse_yes_no("I think nothing here is yesterday's news") is None
    assert parsed_value("yes", ("Yes", "yes"), ("No", "no")) == 1.0
    assert parsed_value("yes", ("No",), ("Yes",)) == 0.0  # a rubric asked the other way round
    assert math.isnan(parsed_value(None, ("Yes",), ("No",)))


def test_agreement_ignores_unscored() -> None:
    a = np.array([0.9, 0.1, np.nan, 0.6])
    b = np.array([1.0, 1.0, 0.0, np.nan])
    assert agreement(a, b) == (0.5, 2)
    assert agreement(np.array([np.nan]), np.array([1.0])) == (None, 0)


def test_judge_items_mix_refusals() -> None:
    rows = [{"prompt": f"p{i}", "reference": f"answer {i}", "category": "x"} for i in range(8)]
    prompts, responses = judge_items(rows)
    assert prompts == [f"p{i}" for i in range(8)]
    refusals = [i for i, r in enumerate(responses) if r != f"answer {i}"]
    assert refusals == [3, 7]


def test_parse_names() -> None:
    assert parse_names(None) == list(DEFAULT) and "e2e_cpu" not in DEFAULT
    assert parse_names("judging, training,judging") == ["judging", "training"]
    with pytest.raises(SystemExit, match="unknown"):
        parse_names("generation,nope")
    with pytest.raises(SystemExit):
        parse_names(" , ")


def test_summary_line() -> None:
    line = summary_line("generation", _rec(3.0))
    assert "generation" in line and "ratio 3" in line and "met" in line
    rec = {**_rec(1.0), "baseline": None}
    assert "n/a" in summary_line("x", rec) and "NOT met" in summary_line("x", rec)


def test_selfmoa_command_overrides_folders(tmp_path) -> None:
    cmd = selfmoa_command("configs/smoke.yaml", tmp_path / "runs", tmp_path / "cache", ("stages=[00_setup]",))
    assert cmd[1:4] == ["-m", "selfmoa.cli", "run"]
    sets = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--set"]
    assert sets == [f"runs_dir={tmp_path / 'runs'}", f"cache_dir={tmp_path / 'cache'}", "stages=[00_setup]"]


def test_peak_rss_of_children_leaves_out_this_process() -> None:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; b = bytearray(32 * 2**20); time.sleep(0.5)"])
    try:
        with PeakRSS(interval=0.01, include_root=False) as rss:
            time.sleep(0.3)
    finally:
        child.wait()
    assert 32 * 2**20 <= rss.peak_bytes < tree_rss(os.getpid()) + 32 * 2**20
    assert tree_rss(os.getpid(), include_root=False) < tree_rss(os.getpid())


def test_headline_of_a_summary() -> None:
    from benchmarks.e2e import headline

    m = {"safety": 0.8, "safety_ci": [0.7, 0.9], "over_refusal": 0.0, "helpfulness": 0.7, "n_pairs": 3}
    out = headline({"safety_gain_points": 50.0, "models": {"selfmoa": m}})
    assert out["safety_gain_points"] == 50.0 and out["helpfulness_change"] is None
    assert out["models"]["selfmoa"] == {k: m[k] for k in ("safety", "safety_ci", "over_refusal", "helpfulness")}


def test_cpu_info_reads_model_and_bf16_amx_flags() -> None:
    text = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
    info = cpu_info(text)
    assert info["model_name"] == "Intel(R) Xeon(R) Platinum"
    assert info["bf16"] and info["amx"] and info["flags"]["amx_tile"] and not info["flags"]["amx_int8"]
    epyc = cpu_info("model name\t: AMD EPYC\nflags\t: avx2 avx512f avx512_bf16\n")
    assert epyc["bf16"] and not epyc["amx"]


def test_study_record_sums_stage_minutes_and_checks_the_targets() -> None:
    from benchmarks.study import stage_minutes, study_record

    step = lambda name, s: {"step": name, "ran": True, "seconds": s}  # noqa: E731
    study = {
        "config": "configs/cpu.yaml",
        "seeds": [0, 1],
        "seconds": 6000.0,
        "runs": [
            {"seed": 0, "seconds": 3000.0, "steps": [step("02_redteam@0", 60.0), step("02_redteam@1", 120.0)]},
            {"seed": 1, "seconds": 2900.0, "steps": [step("07_evaluate", 600.0)]},
        ],
        "report": {"seconds": 100.0, "steps": [step("08_report", 100.0)]},
    }
    assert stage_minutes(study) == {"02_redteam": 3.0, "07_evaluate": 10.0, "08_report": 1.67}
    rec = study_record(study, 3 << 30, "test")
    assert rec["project"] == 100.0 and rec["met"] is False  # 100 min > 90
    assert rec["details"]["minutes_per_seed"] == {"0": 50.0, "1": 48.33}
    assert study_record({**study, "seconds": 5000.0}, 3 << 30, "test")["met"] is True
    assert study_record({**study, "seconds": 5000.0}, None, "test")["met"] is False  # memory not measured


def test_resumed_study_takes_skipped_steps_from_their_manifests(tmp_path) -> None:
    from benchmarks.study import manifest_peak_rss, study_record, with_recorded_seconds
    from selfmoa.artifacts import write_json
    from selfmoa.paths import stage_dir

    for run, stage, it, s in (("cpu-seed0", "02_redteam", 0, 120.0), ("cpu-study", "08_report", None, 30.0)):
        rss = {"peak_rss_gib": {"self": 1.5, "children": 2.5}} if stage == "08_report" else {}
        write_json(stage_dir(tmp_path / run, stage, it) / "manifest.json", {"timings": {"total_s": s}, **rss})
    study = {
        "config": "configs/cpu.yaml",
        "seeds": [0],
        "seconds": 70.0,  # this invocation only ran 07_evaluate
        "runs": [
            {
                "run_id": "cpu-seed0",
                "seed": 0,
                "seconds": 60.0,
                "steps": [
                    {"step": "02_redteam@0", "ran": False, "seconds": 0.0},
                    {"step": "07_evaluate", "ran": True, "seconds": 60.0},
                ],
            }
        ],
        "report": {
            "run_id": "cpu-study",
            "seconds": 0.0,
            "steps": [{"step": "08_report", "ran": False, "seconds": 0.0}],
        },
    }
    full = with_recorded_seconds(study, tmp_path)
    assert full["seconds"] == 210.0 and full["runs"][0]["seconds"] == 180.0 and full["resumed"] == 2
    assert study_record(full, None, "test")["details"]["steps_from_manifests"] == 2
    fresh = {
        **study,
        "runs": [{**study["runs"][0], "steps": study["runs"][0]["steps"][1:]}],
        "report": {**study["report"], "steps": []},
    }
    assert with_recorded_seconds(fresh, tmp_path) is fresh  # nothing skipped: the wall time stands
    assert manifest_peak_rss(study, tmp_path) == (2.5, 1)  # the largest process of the one stage that recorded it


def test_decoder_record_compares_with_the_reference() -> None:
    from benchmarks.decoders import decoder_record

    def m(seconds: float, refusal: float, same: float) -> dict:
        return {"seconds": seconds, "answers": ["a"], "refusal_rate": refusal, "identical_to_reference": same}

    measured = {"reference": m(90.0, 0.30, 1.0), "fast": m(88.0, 0.31, 0.9), "compact": m(40.0, 0.29, 0.8)}
    rec = decoder_record(measured, 485, 64, 64, "test")
    assert rec["baseline"] == 90.0 and rec["project"] == 40.0 and rec["ratio"] == 90.0 / 40.0
    assert rec["met"] is True and "answers" not in rec["details"]["decoders"]["compact"]
    measured["fast"]["refusal_rate"] = 0.34  # a decoder whose refusals drift fails the quality check
    assert decoder_record(measured, 485, 64, 64, "test")["met"] is False


def test_compute_limit_counts_two_flops_per_parameter_for_prompt_and_generated_tokens() -> None:
    out = compute_limit(135_000_000, 162.0, prompt_tokens=0, generated_tokens=100)
    assert out["flops_per_token"] == 270_000_000 and out["tokens_per_s_limit"] == pytest.approx(600.0)
    # as many prompt tokens as generated ones: every generated token costs twice the work
    assert compute_limit(135_000_000, 162.0, 100, 100)["tokens_per_s_limit"] == pytest.approx(300.0)


def test_one_row_linears_reads_every_linear_weight_and_restores_the_threads(monkeypatch) -> None:
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4, bias=False))
    threads = torch.get_num_threads()
    calls: list[int] = []
    set_threads = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), set_threads(n))[1])
    out = one_row_linears(model, repeats=2)
    assert torch.get_num_threads() == threads
    assert 1 in calls and calls[-1] == threads  # one pass on one thread, then the threads as they were
    assert out["n_linears"] == 2
    assert out["weight_bytes"] == (8 * 16 + 16 * 4) * 4
    assert out["one_thread"]["threads"] == 1 and out["all_threads"]["threads"] == threads
    for label in ("all_threads", "one_thread"):
        run = out[label]
        assert run["seconds"] > 0
        assert run["tokens_per_s"] == pytest.approx(1 / run["seconds"])
        assert run["gbs"] == pytest.approx(out["weight_bytes"] / run["seconds"] / 1e9)


def test_recorded_peak_takes_the_larger_of_kernel_and_child() -> None:
    from benchmarks.e2e import recorded_peak_gib

    assert recorded_peak_gib({"peak_rss_gib": {"self": 1.5, "children": 2.25}}) == 2.25
    assert recorded_peak_gib({"peak_rss_gib": {"self": 1.5, "children": None}}) == 1.5
    assert recorded_peak_gib({"peak_rss_gib": {"self": None, "children": None}}) is None
    assert recorded_peak_gib({}) is None
