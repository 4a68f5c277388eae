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


def test_torch_is_seeded_when_it_is_first_imported() -> None:
    import subprocess
    import sys

    from selfmoa.paths import ROOT

    # a fresh interpreter: seeding before torch is imported must leave torch's stream where seeding after would;
    # a lookup that does not import (as transformers' availability check does) and a reloaded module (notebook
    # autoreload) leave one pending seed, the latest
    code = (
        "import importlib, importlib.util, sys; import selfmoa.seeding as S; S.seed_everything(3); "
        "assert importlib.util.find_spec('torch') is not None; importlib.reload(S); S.seed_everything(11); "
        "assert 'torch' not in sys.modules; "
        "assert sum(getattr(f, 'seeds_torch_on_import', False) for f in sys.meta_path) == 1; "
        "import torch; a = torch.rand(3).tolist(); torch.manual_seed(11); assert a == torch.rand(3).tolist(), a; "
        "assert not any(getattr(f, 'seeds_torch_on_import', False) for f in sys.meta_path); "
        "assert 'exec_module' not in vars(torch.__spec__.loader); "
        "S.seed_everything(5); b = torch.rand(3).tolist(); torch.manual_seed(5); assert b == torch.rand(3).tolist(); "
        "print('ok')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"
