import random

import numpy as np

from selfmoa.seeding import derive_seed, seed_everything


def test_derive_seed_is_stable_and_distinct() -> None:
    assert derive_seed(0, "03_sample", 1) == derive_seed(0, "03_sample", 1)
    seeds = {derive_seed(0, s, i) for s in ("02_redteam", "03_sample") for i in range(5)}
    assert len(seeds) == 10
    assert derive_seed(1, "03_sample", 1) != derive_seed(0, "03_sample", 1)
    assert 0 <= derive_seed(123, "x", 9) < 2**31


def test_seed_everything_repeats_streams() -> None:
    import torch

    seed_everything(7)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(7)
    assert a == (random.random(), np.random.rand(), torch.rand(1).item())
