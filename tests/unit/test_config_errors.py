"""Malformed configs fail when they load: one `selfmoa: error:` line, exit code 2, torch never imported.

All cases run through `selfmoa.cli.main` in one fresh interpreter (cheap), which reports whether torch or
transformers were imported; two more cases run the real `selfmoa` command line (`config --check` and `run`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from selfmoa.judges.factory import build_judge
from selfmoa.paths import ROOT

# (id, YAML text, fragment the single error line must contain)
CASES: list[tuple[str, str, str]] = [
    ("unknown_key", "bogus: 1", "bogus: unknown key"),
    ("unknown_capability_model", "capability: {models: [base, iter9]}", "capability.models: unknown name 'iter9'"),
    ("unknown_nested_key", "train: {bta: 0.1}", "train.bta: unknown key"),
    ("not_a_number", "train: {beta: fast}", "train.beta: expected a number"),
    ("nan", "train: {beta: .nan}", "train.beta: expected a finite number"),
    ("micro_batch_not_divisor", "train: {batch_size: 8, micro_batch_size: 3}", "train.micro_batch_size: 3 does not"),
    ("inf", "study: {weight_sweep: [.inf]}", "study.weight_sweep[0]: expected a finite number"),
    ("section_not_mapping", "train: 5", "train: expected a mapping"),
    ("top_not_mapping", "[1, 2]", "config: expected a mapping"),
    ("bad_yaml_multiline", "a: [1, 2\nb: {", "not valid YAML"),
    ("unknown_train_judge", "judge: {train_safety: {refusl: 1.0}}", "judge.train_safety: unknown judge 'refusl'"),
    ("unknown_eval_judge", "judge: {eval_helpfulness: {embedings: 1.0}}", "judge.eval_helpfulness: unknown judge"),
    ("unknown_zero_weight_judge", "judge: {eval_safety: {refusal: 1.0, lm_rubrik: 0.0}}", "unknown judge 'lm_rubrik'"),
    ("all_zero_weights", "judge: {train_safety: {refusal: 0.0}}", "judge.train_safety: needs at least one judge"),
    ("empty_ensemble", "judge: {eval_safety: {}}", "judge.eval_safety: needs at least one judge"),
    ("safety_only_for_help", "judge: {train_helpfulness: {toxicity: 1.0}}", "'toxicity' scores safety only"),
    ("guard_without_model", "judge: {eval_safety: {guard: 1.0}}", "'guard' needs judge.guard_model"),
    ("reward_without_model", "judge: {train_helpfulness: {reward: 1.0}}", "'reward' needs judge.reward_model"),
    ("negative_weight", "judge: {train_safety: {refusal: -1}}", "judge.train_safety: -1.0 is below"),
    ("unknown_eval_set", "eval: {harmful_sets: [harmbench_test]}", "unknown benchmark 'harmbench_test'"),
    ("train_set_as_eval", "eval: {benign_sets: [strongreject]}", "has role 'train-seed'"),
    ("benign_set_as_harmful", "eval: {harmful_sets: [overrefusal]}", "eval.harmful_sets: 'overrefusal' has role"),
    ("no_harmful_sets", "eval: {harmful_sets: []}", "eval.harmful_sets: must name at least one"),
    ("duplicate_eval_set", "eval: {benign_sets: [overrefusal, overrefusal]}", "'overrefusal' is listed twice"),
    ("eval_sets_not_list", "eval: {harmful_sets: advbench}", "eval.harmful_sets: expected a list"),
    ("unknown_stage", "stages: [03_sampel]", "stages: unknown name '03_sampel'"),
    ("duplicate_stage", "stages: [00_setup, 00_setup]", "stages: '00_setup' is listed twice"),
    ("empty_policy", "policy: {name: ''}", "policy.name: empty model name"),
    ("blank_policy", "policy: {name: '  '}", "policy.name: empty model name"),
    ("unknown_embedded", "attacker: {name: 'embedded:SmolLM3'}", "attacker.name: unknown embedded model"),
    ("malformed_hub_id", "judge: {judge_model: {name: 'not a model'}}", "judge.judge_model.name: 'not a model' is"),
    ("missing_local_model", "policy: {name: ./no/such/model}", "policy.name: './no/such/model' is not an existing"),
    ("padded_name", "policy: {name: ' embedded:SmolLM2-135M-Instruct'}", "leading or trailing spaces"),
    ("empty_guard_model", "judge: {guard_model: ''}", "judge.guard_model: empty model name"),
    ("empty_revision", "policy: {revision: ''}", "policy.revision: empty revision"),
    ("revision_of_embedded", "policy: {revision: main}", "embedded models have no revisions"),
    ("unknown_mutation", "redteam: {mutations: [roleplay, jailbrake]}", "redteam.mutations: unknown name 'jailbrake'"),
    ("no_lora_targets", "train: {target_modules: []}", "train.target_modules: must name at least one"),
    ("duplicate_lora_target", "reset: {target_modules: [q_proj, q_proj]}", "reset.target_modules: 'q_proj' is listed"),
    ("empty_profile", "profile: ''", "profile: '' must be a plain folder name"),
    ("path_profile", "profile: ../escape", "profile: '../escape' must be a plain folder name"),
    ("empty_runs_dir", "runs_dir: ''", "runs_dir: empty folder name"),
    ("bad_choice", "policy: {dtype: int8}", "policy.dtype: 'int8' is not one of"),
    ("bool_for_int", "iterations: true", "iterations: expected int"),
    ("below_minimum", "seed: -1", "seed: -1 is below the minimum"),
]

HARNESS = """
import contextlib, io, json, sys
from selfmoa.cli import main
out = {}
for case_id, path in json.loads(sys.argv[1]).items():
    err, std = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
        rc = main(["config", "--check", path])
    out[case_id] = {"rc": rc, "stderr": err.getvalue(), "stdout": std.getvalue()}
heavy = [m for m in ("torch", "transformers", "peft", "sentence_transformers") if m in sys.modules]
print(json.dumps({"cases": out, "heavy": heavy}))
"""


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every case through `selfmoa config --check` in one fresh interpreter."""
    folder = tmp_path_factory.mktemp("configs")
    paths = {}
    for case_id, text, _ in CASES:
        paths[case_id] = str(folder / f"{case_id}.yaml")
        Path(paths[case_id]).write_text(text + "\n")
    proc = subprocess.run(
        [sys.executable, "-c", HARNESS, json.dumps(paths)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return {**json.loads(proc.stdout), "paths": paths}


def test_there_are_at_least_30_cases() -> None:
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize(("case_id", "fragment"), [(c[0], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_config_gives_one_error_line_and_exit_2(checked: dict[str, Any], case_id: str, fragment: str) -> None:
    result = checked["cases"][case_id]
    assert result["rc"] == 2 and result["stdout"] == ""
    lines = result["stderr"].splitlines()
    assert len(lines) == 1 and lines[0].startswith("selfmoa: error: "), lines
    assert fragment in lines[0]
    assert checked["paths"][case_id] in lines[0]  # names the file


def test_no_model_library_was_imported(checked: dict[str, Any]) -> None:
    assert checked["heavy"] == []


def test_committed_profiles_pass_the_check() -> None:
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        proc = subprocess.run(
            [sys.executable, "-m", "selfmoa.cli", "config", "--check", str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0 and proc.stdout.strip() == f"{path}: ok", proc.stderr


def test_selfmoa_run_rejects_a_bad_name_before_anything_starts(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "configs" / "smoke.yaml").read_text() + "stages: [00_setup, 07_evaluat]\n")
    code = (
        "import sys; from selfmoa.cli import main; rc = main(sys.argv[1:]); "
        "assert 'torch' not in sys.modules and 'papermill' not in sys.modules, 'loaded too much'; sys.exit(rc)"
    )
    argv = ["run", "--config", str(bad), "--set", f"runs_dir={tmp_path / 'runs'}"]
    proc = subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("selfmoa: error: ") and "unknown name '07_evaluat'" in lines[0]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", ["guard", "toxicity"])
def test_safety_only_judges_match_the_judges_package(name: str) -> None:
    from selfmoa.config import SAFETY_ONLY_JUDGES

    assert name in SAFETY_ONLY_JUDGES
    with pytest.raises(ValueError, match="safety"):
        build_judge(name, "helpfulness")
