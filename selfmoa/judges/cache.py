"""An on-disk judgement cache (sqlite), keyed on judge id, template version, aspect, prompt and response.

`CachedJudge` wraps any judge: it looks every item up, scores only the misses (each distinct pair
once), stores the new judgements, unscored ones included (they are deterministic outcomes too), and
returns them in the caller's order.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path

import numpy as np

from selfmoa.judges.base import Judge, Judgements, check_inputs


def judgement_key(judge_id: str, template_version: str, aspect: str, prompt: str, response: str) -> str:
    """Cache key of one judgement."""
    blob = json.dumps([judge_id, template_version, aspect, prompt, response], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class JudgementCache:
    """sqlite key -> (value or NULL when unscored), safe to share across processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as con:
            con.execute("CREATE TABLE IF NOT EXISTS judgements (key TEXT PRIMARY KEY, value REAL)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def get_many(self, keys: list[str]) -> dict[str, float | None]:
        """Stored judgements for the keys present (None = unscored)."""
        found: dict[str, float | None] = {}
        with self._lock, self._connect() as con:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                marks = ",".join("?" * len(chunk))
                found.update(con.execute(f"SELECT key, value FROM judgements WHERE key IN ({marks})", chunk))
        return found

    def put_many(self, items: dict[str, float | None]) -> None:
        """Store judgements (overwriting)."""
        with self._lock, self._connect() as con:
            con.executemany("INSERT OR REPLACE INTO judgements (key, value) VALUES (?, ?)", list(items.items()))

    def __len__(self) -> int:
        with self._lock, self._connect() as con:
            return int(con.execute("SELECT COUNT(*) FROM judgements").fetchone()[0])


class CachedJudge:
    """A judge whose judgements are read from and written to a `JudgementCache`."""

    def __init__(self, judge: Judge, cache: JudgementCache) -> None:
        self.judge, self.cache = judge, cache
        self.judge_id, self.template_version, self.aspect = judge.judge_id, judge.template_version, judge.aspect
        self.hits = self.misses = 0

    def score(self, prompts: list[str], responses: list[str]) -> Judgements:
        """Cached judgements where present; the wrapped judge scores the rest."""
        prompts, responses = check_inputs(prompts, responses)
        keys = [
            judgement_key(self.judge_id, self.template_version, self.aspect, p, r)
            for p, r in zip(prompts, responses, strict=True)
        ]
        found = self.cache.get_many(list(dict.fromkeys(keys)))
        todo = list(dict.fromkeys(k for k in keys if k not in found))
        self.hits += sum(k in found for k in keys)
        self.misses += len(todo)
        if todo:
            first = {k: i for i, k in reversed(list(enumerate(keys)))}
            idx = [first[k] for k in todo]
            fresh = self.judge.score([prompts[i] for i in idx], [responses[i] for i in idx])
            new = {k: (None if u else float(v)) for k, v, u in zip(todo, fresh.values, fresh.unscored, strict=True)}
            self.cache.put_many(new)
            found.update(new)
        values = np.array([np.nan if found[k] is None else found[k] for k in keys], dtype=np.float64)
        return Judgements(values, np.isnan(values), self.judge_id, self.template_version, self.aspect)
