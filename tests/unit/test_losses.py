"""The multi-objective DPO loss: sign, reduction to DPO, gradients and its optimum on a toy problem."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from selfmoa.losses import chosen_nll, modpo_loss


def _t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)


def test_pinned_numerical_example() -> None:
    # l_w = -1 - (-2) = 1, l_l = -3 - (-2.5) = -0.5, beta = 0.5 -> beta*(l_w - l_l) = 0.75
    # margin 0.6, w_s = 2, w_h = 1.5 -> logit = (0.75 - 1.2) / 1.5 = -0.3
    losses, cr, rr = modpo_loss(_t(-1.0), _t(-3.0), _t(-2.0), _t(-2.5), _t(0.6), beta=0.5, w_safety=2.0, w_helpful=1.5)
    assert losses.item() == pytest.approx(math.log1p(math.exp(0.3)), abs=1e-12)
    assert cr.item() == pytest.approx(0.5) and rr.item() == pytest.approx(-0.25)


def test_safer_chosen_needs_larger_gap() -> None:
    """Same log-ratio gap: the pair whose chosen answer is safer (m > 0) has the larger loss and gradient."""
    pol_w = torch.tensor([-1.0, -1.0, -1.0], requires_grad=True)
    args = (torch.full((3,), -2.0), torch.full((3,), -1.5), torch.full((3,), -2.0))
    margin = torch.tensor([1.0, 0.0, -1.0])
    losses, _, _ = modpo_loss(pol_w, args[0], args[1], args[2], margin, beta=0.1, w_safety=1.0)
    assert losses[0] > losses[1] > losses[2]
    losses.sum().backward()
    grad = pol_w.grad
    assert (grad < 0).all(), "descent must raise the chosen log-prob"
    assert grad[0].abs() > grad[1].abs() > grad[2].abs(), "safer chosen answers are pushed harder"
    # The pair counts as learned (logit 0, loss log 2) exactly when beta*(l_w - l_l) = w_s * m.
    w_s, m, beta = 0.5, 0.8, 0.1
    gap = w_s * m / beta
    loss, _, _ = modpo_loss(_t(gap), _t(0.0), _t(0.0), _t(0.0), _t(m), beta=beta, w_safety=w_s)
    assert loss.item() == pytest.approx(math.log(2.0))


def test_equals_standard_dpo_when_no_safety_weight() -> None:
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (torch.randn(16, generator=g, dtype=torch.float64) * 5 for _ in range(4))
    margin = torch.rand(16, generator=g, dtype=torch.float64) * 2 - 1
    beta = 0.1
    losses, _, _ = modpo_loss(pc, pr, rc, rr, margin, beta=beta, w_safety=0.0, w_helpful=1.0)
    # TRL 1.16 DPOTrainer, loss_type="sigmoid": -logsigmoid(beta * ((pc - rc) - (pr - rr)))
    reference = -F.logsigmoid(beta * ((pc - rc) - (pr - rr)))
    torch.testing.assert_close(losses, reference)


def test_gradient_direction() -> None:
    pc = torch.zeros(4, requires_grad=True)
    pr = torch.zeros(4, requires_grad=True)
    margin = torch.tensor([0.5, 0.0, -0.5, 1.0])
    losses, _, _ = modpo_loss(pc, pr, torch.zeros(4), torch.zeros(4), margin, beta=0.2, w_safety=1.0, w_helpful=2.0)
    losses.mean().backward()
    assert (pc.grad < 0).all() and (pr.grad > 0).all()
    torch.testing.assert_close(pc.grad, -pr.grad)


def test_bad_arguments_are_named() -> None:
    z = torch.zeros(2)
    with pytest.raises(ValueError, match="beta"):
        modpo_loss(z, z, z, z, z, beta=0.0)
    with pytest.raises(ValueError, match="w_helpful"):
        modpo_loss(z, z, z, z, z, beta=0.1, w_helpful=0.0)
    with pytest.raises(ValueError, match="same shape"):
        modpo_loss(z, z, z, z, torch.zeros(3), beta=0.1)


def test_chosen_nll() -> None:
    logps = torch.tensor([[-1.0, -2.0, -9.0], [-3.0, -9.0, -9.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert chosen_nll(logps, mask).item() == pytest.approx(2.0)


def _train_categorical(
    h: torch.Tensor, s: torch.Tensor, ref: torch.Tensor, beta: float, w_s: float, w_h: float, steps: int = 200
) -> torch.Tensor:
    """Minimise the expected pairwise loss over a categorical policy; pairs follow Bradley-Terry on h."""
    n = len(h)
    pairs = list(itertools.permutations(range(n), 2))
    wi = torch.tensor([i for i, _ in pairs])
    li = torch.tensor([j for _, j in pairs])
    p_pref = torch.sigmoid(h[wi] - h[li])  # probability that i is labelled chosen over j
    theta = torch.log(ref).clone().requires_grad_(True)
    opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=steps, tolerance_grad=1e-10, line_search_fn="strong_wolfe")
    log_ref = torch.log(ref)

    def closure() -> torch.Tensor:
        logp = torch.log_softmax(theta, 0)
        losses, _, _ = modpo_loss(
            logp[wi], logp[li], log_ref[wi], log_ref[li], s[wi] - s[li], beta=beta, w_safety=w_s, w_helpful=w_h
        )
        loss = (p_pref * losses).sum()
        opt.zero_grad()
        loss.backward()
        return loss

    opt.step(closure)
    return torch.softmax(theta.detach(), 0)


def test_optimum_on_categorical_policy() -> None:
    """Training moves mass to the best weighted score and reaches pi_ref * exp((w_h*h + w_s*s)/beta)."""
    torch.manual_seed(0)
    h = torch.tensor([1.0, 0.8, 0.3, 0.0, 0.5], dtype=torch.float64)  # response 0 is the most helpful ...
    s = torch.tensor([0.0, 1.0, 1.0, 0.2, 0.6], dtype=torch.float64)  # ... but unsafe; response 1 is safe
    ref = torch.tensor([0.25, 0.15, 0.2, 0.25, 0.15], dtype=torch.float64)
    beta, w_h, w_s = 1.0, 1.0, 1.0
    pi = _train_categorical(h, s, ref, beta, w_s, w_h)
    target = ref * torch.exp((w_h * h + w_s * s) / beta)
    target = target / target.sum()
    torch.testing.assert_close(pi, target, atol=1e-4, rtol=0)
    assert pi.argmax().item() == 1 and (w_h * h + w_s * s).argmax().item() == 1
    assert pi[1] > ref[1] and pi[0] < ref[0]
    # Without the safety objective the most helpful (unsafe) response wins: the margin term is what moves mass.
    pi_dpo = _train_categorical(h, s, ref, beta, 0.0, w_h)
    target_dpo = ref * torch.exp(h / beta)
    torch.testing.assert_close(pi_dpo, target_dpo / target_dpo.sum(), atol=1e-4, rtol=0)
    assert pi_dpo.argmax().item() == 0
