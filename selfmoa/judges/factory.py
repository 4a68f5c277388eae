"""Build weighted judge ensembles from names and weights (as in `JudgeConfig`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from selfmoa.judges.base import Judge, check_aspect
from selfmoa.judges.ensemble import EnsembleJudge, check_weights

JUDGE_NAMES = ("refusal", "lm_rubric", "guard", "reward", "toxicity", "embedding")

ModelPair = tuple[Any, Any]


def _resolve_guard(guard: ModelPair | str | None, cache_dir: str | Path) -> ModelPair:
    if guard is None:
        raise ValueError(
            "judge 'guard' needs a guard model: set judge.guard_model to a hub id "
            "(e.g. a Llama-Guard-3-1B checkpoint) or pass guard=(model, tokenizer)"
        )
    if isinstance(guard, str):
        from selfmoa.config import ModelSpec
        from selfmoa.models import load_model

        return load_model(ModelSpec(name=guard, dtype="auto", device="auto"), cache_dir)
    return guard


def _resolve_reward(reward: ModelPair | str | None) -> ModelPair:
    if reward is None:
        raise ValueError(
            "judge 'reward' needs a reward model: set judge.reward_model to a hub id of a "
            "sequence-classification reward model or pass reward=(model, tokenizer)"
        )
    if isinstance(reward, str):
        from selfmoa.judges.reward import load_reward_model

        return load_reward_model(reward)
    return reward


def build_judge(
    name: str,
    aspect: str,
    *,
    model: Any = None,
    tokenizer: Any = None,
    cache_dir: str | Path = "data/cache",
    guard: ModelPair | str | None = None,
    reward: ModelPair | str | None = None,
) -> Judge:
    """One judge by name (see `JUDGE_NAMES`)."""
    check_aspect(aspect)
    if name == "refusal":
        from selfmoa.judges.refusal import RefusalJudge

        return RefusalJudge(aspect)
    if name == "lm_rubric":
        if model is None or tokenizer is None:
            raise ValueError(
                "judge 'lm_rubric' needs model= and tokenizer= (load judge.judge_model with "
                "selfmoa.models.load_model(cfg.judge.judge_model, cfg.cache_dir))"
            )
        from selfmoa.judges.lm_rubric import LMRubricJudge

        return LMRubricJudge(model, tokenizer, aspect)
    if name == "guard":
        if aspect != "safety":
            raise ValueError("judge 'guard' scores safety only; remove it from the helpfulness weights")
        from selfmoa.judges.guard import GuardJudge

        return GuardJudge(*_resolve_guard(guard, cache_dir))
    if name == "reward":
        from selfmoa.judges.reward import RewardJudge

        return RewardJudge(*_resolve_reward(reward), aspect=aspect)
    if name == "toxicity":
        from selfmoa.judges.toxicity import ToxicityJudge

        return ToxicityJudge(aspect)
    if name == "embedding":
        from selfmoa.judges.embedding import load_or_train

        return load_or_train(aspect, cache_dir)
    raise ValueError(f"unknown judge {name!r}; known: {', '.join(JUDGE_NAMES)}")


def build_judges(
    weights: Mapping[str, float],
    aspect: str,
    *,
    model: Any = None,
    tokenizer: Any = None,
    cache_dir: str | Path = "data/cache",
    guard: ModelPair | str | None = None,
    reward: ModelPair | str | None = None,
    use_cache: bool = True,
) -> EnsembleJudge:
    """A weighted ensemble of the named judges for one aspect.

    Args:
        weights: judge name -> weight (e.g. `cfg.judge.train_safety`); zero weights are skipped.
        aspect: "safety" or "helpfulness".
        model, tokenizer: the judge LM (needed by 'lm_rubric').
        cache_dir: holds the embedding judge's fitted model and the judgement cache (`judges/judgements.sqlite`).
        guard, reward: (model, tokenizer) or a hub id, for 'guard' / 'reward'.
        use_cache: wrap each member in a `CachedJudge`.
    """
    weights = check_weights(weights)
    unknown = sorted(set(weights) - set(JUDGE_NAMES))
    if unknown:
        raise ValueError(f"unknown judge names {unknown}; known: {', '.join(JUDGE_NAMES)}")
    members: dict[str, Judge] = {}
    cache = None
    if use_cache:
        from selfmoa.judges.cache import CachedJudge, JudgementCache

        cache = JudgementCache(Path(cache_dir) / "judges" / "judgements.sqlite")
    for name in weights:
        judge = build_judge(
            name, aspect, model=model, tokenizer=tokenizer, cache_dir=cache_dir, guard=guard, reward=reward
        )
        members[name] = CachedJudge(judge, cache) if cache is not None else judge
    return EnsembleJudge(members, weights, aspect)


def judges_from_config(judge_cfg: Any, stage: str, aspect: str, **kwargs: Any) -> EnsembleJudge:
    """The ensemble a `JudgeConfig` names for `stage` ('train' or 'eval') and `aspect`.

    Extra keyword arguments go to `build_judges` (model, tokenizer, cache_dir, use_cache); guard and
    reward default to `judge_cfg.guard_model` / `judge_cfg.reward_model`.
    """
    if stage not in ("train", "eval"):
        raise ValueError(f"stage must be 'train' or 'eval', got {stage!r}")
    weights = getattr(judge_cfg, f"{stage}_{check_aspect(aspect)}")
    kwargs.setdefault("guard", judge_cfg.guard_model)
    kwargs.setdefault("reward", judge_cfg.reward_model)
    return build_judges(weights, aspect, **kwargs)


# --------------------------------------------------------------------------------------------------
# Judges of a run config
# --------------------------------------------------------------------------------------------------

CONFIGURATIONS = ("train", "eval")
LM_JUDGES = ("lm_rubric",)


def needs_judge_lm(cfg: Any, which: str) -> bool:
    """Whether the `which` ('train' or 'eval') ensembles of a `RunConfig` use the judge LM."""
    if which not in CONFIGURATIONS:
        raise ValueError(f"judge configuration must be one of {list(CONFIGURATIONS)}, got {which!r}")
    weights = {**getattr(cfg.judge, f"{which}_safety"), **getattr(cfg.judge, f"{which}_helpfulness")}
    return any(w > 0 for name, w in weights.items() if name in LM_JUDGES)


def judge_lm(cfg: Any, *which: str) -> ModelPair | None:
    """The LM of the LM judges (`judge.judge_model`: the untouched embedded SmolLM2 by default, never the
    policy), loaded only when one of the `which` configurations uses it; None otherwise."""
    if not any(needs_judge_lm(cfg, w) for w in which):
        return None
    from selfmoa.models import load_model

    return load_model(cfg.judge.judge_model, cfg.cache_dir)


def stage_judges(cfg: Any, which: str, lm: ModelPair | None = None) -> tuple[EnsembleJudge, EnsembleJudge]:
    """(safety, helpfulness) ensembles of the `which` ('train' or 'eval') judge configuration.

    Args:
        cfg: the run config.
        which: 'train' (stages 02-05) or 'eval' (stages 07, 07b).
        lm: the judge LM from `judge_lm`; loaded here when the configuration needs it and none is given.
    """
    if lm is None:
        lm = judge_lm(cfg, which)
    model, tok = lm if lm else (None, None)
    kw = {"model": model, "tokenizer": tok, "cache_dir": cfg.cache_dir}
    return (
        judges_from_config(cfg.judge, which, "safety", **kw),
        judges_from_config(cfg.judge, which, "helpfulness", **kw),
    )
