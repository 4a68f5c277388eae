from pathlib import Path

import pytest

from selfmoa import config as C
from selfmoa.paths import CONFIGS


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_profile_loads(path: Path) -> None:
    cfg = C.load(path)
    assert cfg.profile == path.stem
    assert C.config_hash(cfg) == C.config_hash(C.load(path))


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "x.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bogus: 1", "bogus: unknown key"),
        ("train: {bta: 0.1}", "train.bta: unknown key"),
        ("train: {beta: fast}", "train.beta: expected a number"),
        ("train: {epochs: 1.5}", "train.epochs: expected int"),
        ("train: {beta: -1}", "train.beta: -1.0 is below the minimum"),
        ("judge: {unsafe_below: 2}", "judge.unsafe_below: 2.0 is above the maximum"),
        ("policy: {dtype: int8}", "policy.dtype: 'int8' is not one of"),
        ("redteam: {mutations: roleplay}", "redteam.mutations: expected a list"),
        ("judge: {train_safety: {refusal: -2}}", "judge.train_safety: -2.0 is below"),
        ("iterations: true", "iterations: expected int"),
    ],
)
def test_bad_values_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(C.ConfigError) as err:
        C.load(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(C.ConfigError, match="config file not found"):
        C.load(tmp_path / "nope.yaml")
    with pytest.raises(C.ConfigError, match="not valid YAML"):
        C.load(_write(tmp_path, "a: [1, 2"))


def test_overrides_dict_and_strings(tmp_path: Path) -> None:
    path = _write(tmp_path, "train: {beta: 0.1}")
    assert C.load(path, {"train.beta": 0.3}).train.beta == 0.3
    cfg = C.load(path, ["train.beta=0.2", "policy.load_in_4bit=true", "eval.harmful_sets=[advbench, jbb_harmful]"])
    assert cfg.train.beta == 0.2 and cfg.policy.load_in_4bit and cfg.eval.harmful_sets == ["advbench", "jbb_harmful"]
    with pytest.raises(C.ConfigError, match="expected key=value"):
        C.load(path, ["train.beta"])


def test_exponent_numbers_without_a_dot_are_numbers(tmp_path: Path) -> None:
    """PyYAML reads 1e-3 as a string; float fields accept it, from files and from --set."""
    path = _write(tmp_path, "train: {learning_rate: 2e-4}")
    assert C.load(path).train.learning_rate == 2e-4
    assert C.load(path, ["train.learning_rate=1e-3"]).train.learning_rate == 1e-3
    with pytest.raises(C.ConfigError, match="train.learning_rate: expected a number"):
        C.load(path, ["train.learning_rate=1e-3x"])


def test_hash_changes_with_values_and_configs_are_frozen() -> None:
    a, b = C.RunConfig(), C.from_dict(C.RunConfig, {"train": {"beta": 0.5}})
    assert C.config_hash(a) != C.config_hash(b)
    with pytest.raises(AttributeError):
        a.seed = 3  # type: ignore[misc]


def test_describe_documents_every_leaf() -> None:
    rows = C.describe()
    keys = {r[0] for r in rows}
    assert {"train.beta", "judge.unsafe_below", "policy.name", "judge.judge_model.dtype"} <= keys
    assert all(help_ for _, _, help_ in rows)


def test_with_overrides_validates() -> None:
    from selfmoa import config as C
    from selfmoa.paths import CONFIGS

    cfg = C.load(CONFIGS / "cpu.yaml")
    assert C.with_overrides(cfg, {"pairs.order": "safety"}).pairs.order == "safety"
    assert cfg.pairs.order == "tiered"
    with pytest.raises(C.ConfigError, match="pairs.order"):
        C.with_overrides(cfg, {"pairs.order": "random"})
    with pytest.raises(C.ConfigError, match="study.label_noise"):
        C.with_overrides(cfg, {"study.label_noise": [0.1, 1.5]})
