"""The multi-objective DPO loss (MODPO form, arXiv 2310.03708), as pure tensor functions.

Notation. For a prompt x and a response y, the log-ratio of the policy to the reference is

    l(y) = log pi(y|x) - log pi_ref(y|x)            (log-probabilities summed over response tokens)

y_w is the chosen response, y_l the rejected one (pairs are ordered by helpfulness h), and s(y) in [0, 1]
is the safety score of a response (1 = safe), known from the judges.

The loss of one pair is

    loss = -log sigmoid( (1/w_h) * ( beta * (l(y_w) - l(y_l)) - w_s * (s(y_w) - s(y_l)) ) )

Where it comes from. We want the policy that maximises the weighted reward w_h*h + w_s*s under a KL
penalty beta * KL(pi || pi_ref). Its closed form is

    pi*(y|x) = pi_ref(y|x) * exp( (w_h*h(y) + w_s*s(y)) / beta ) / Z(x),

so  w_h*h(y) = beta*l*(y) - w_s*s(y) + beta*log Z(x)  for the optimal log-ratio l*. The helpfulness order
of the pairs is modelled by Bradley-Terry, P(y_w > y_l) = sigmoid(h(y_w) - h(y_l)); substituting h from
the line above (Z cancels) and taking the negative log-likelihood gives the loss. Its minimiser is pi*:
at the optimum  beta*(l(y_w) - l(y_l)) = w_h*(h(y_w) - h(y_l)) + w_s*(s(y_w) - s(y_l)).

Sign of the safety term. The margin m = s(y_w) - s(y_l) is *subtracted* inside the sigmoid. For a fixed
log-ratio gap, a pair whose chosen answer is much safer than the rejected one (m > 0) therefore has a
*larger* loss and a larger gradient: the policy must open a wider gap, beta*(l_w - l_l) >= w_s*m, before
the pair counts as learned, i.e. it is pushed harder toward safer chosen answers. A pair whose chosen
answer is the less safe one (m < 0) is satisfied with a smaller gap. With w_s = 0 and w_h = 1 this is the
standard DPO sigmoid loss. (The paper, per secondary readings, omits MODPO's 1/w_h normaliser; here it is
kept, and w_h = 1 recovers the paper's form.)
"""

from __future__ import annotations

from typing import Any


def modpo_loss(
    policy_chosen_logps: Any,
    policy_rejected_logps: Any,
    ref_chosen_logps: Any,
    ref_rejected_logps: Any,
    safety_margin: Any,
    beta: float,
    w_safety: float = 1.0,
    w_helpful: float = 1.0,
) -> tuple[Any, Any, Any]:
    """Per-pair multi-objective DPO loss.

    ``loss = -log sigmoid((1/w_h) * (beta*(l(y_w) - l(y_l)) - w_s*(s(y_w) - s(y_l))))`` with
    ``l(y) = log pi(y|x) - log pi_ref(y|x)``; its optimum is ``pi* ∝ pi_ref * exp((w_h*h + w_s*s)/beta)``
    (derivation and sign in the module docstring). ``w_safety = 0, w_helpful = 1`` gives plain DPO.

    Args:
        policy_chosen_logps: (B,) summed log-probabilities of the chosen responses under the policy.
        policy_rejected_logps: (B,) the same for the rejected responses.
        ref_chosen_logps: (B,) summed log-probabilities of the chosen responses under the reference.
        ref_rejected_logps: (B,) the same for the rejected responses.
        safety_margin: (B,) s(y_w) - s(y_l), the signed safety-score difference of each pair.
        beta: KL-penalty strength (> 0).
        w_safety: w_s, weight of the safety objective (>= 0).
        w_helpful: w_h, weight of the helpfulness objective (> 0).

    Returns:
        (losses, chosen_rewards, rejected_rewards), each (B,). The rewards are the implicit DPO rewards
        ``beta * l(y)``, detached (for logging).
    """
    import torch.nn.functional as F

    if not beta > 0:
        raise ValueError(f"beta must be > 0 (the KL-penalty strength), got {beta}")
    if not w_helpful > 0:
        raise ValueError(f"w_helpful must be > 0 (it divides the logit), got {w_helpful}")
    if w_safety < 0:
        raise ValueError(f"w_safety must be >= 0, got {w_safety}")
    shapes = {t.shape for t in (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)}
    if len(shapes) != 1 or safety_margin.shape != policy_chosen_logps.shape or policy_chosen_logps.dim() != 1:
        raise ValueError(
            "modpo_loss expects five tensors of the same shape (B,); got "
            f"policy {tuple(policy_chosen_logps.shape)}/{tuple(policy_rejected_logps.shape)}, "
            f"ref {tuple(ref_chosen_logps.shape)}/{tuple(ref_rejected_logps.shape)}, margin {tuple(safety_margin.shape)}"
        )
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    margin = safety_margin.to(chosen_logratios.dtype)
    logits = (beta * (chosen_logratios - rejected_logratios) - w_safety * margin) / w_helpful
    losses = -F.logsigmoid(logits)
    return losses, (beta * chosen_logratios).detach(), (beta * rejected_logratios).detach()


def chosen_nll(chosen_token_logps: Any, chosen_mask: Any) -> Any:
    """Mean negative log-likelihood per chosen-response token (the optional SFT term).

    Args:
        chosen_token_logps: (B, T) per-token log-probabilities of the chosen sequences under the policy.
        chosen_mask: (B, T) 1 where the token belongs to the chosen response, 0 elsewhere (prompt, padding).

    Returns:
        A scalar: ``-sum(logp * mask) / sum(mask)`` (0 when the mask is empty).
    """
    if chosen_token_logps.shape != chosen_mask.shape:
        raise ValueError(
            f"chosen_nll: log-probs {tuple(chosen_token_logps.shape)} and mask {tuple(chosen_mask.shape)} differ"
        )
    mask = chosen_mask.to(chosen_token_logps.dtype)
    return -(chosen_token_logps * mask).sum() / mask.sum().clamp(min=1.0)
