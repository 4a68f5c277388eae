"""The study's one text normaliser, shared by every duplicate and contamination check.

`normalise_text` is the canonical form of a text (Unicode NFKC, straight quotes, lower case, single
spaces); `text_key` drops everything but letters and digits from it, so two prompts that differ only in
punctuation or spacing share a key. The train/eval contamination guards (`selfmoa.data` when pools are
built, `selfmoa.pairs.assert_no_eval_prompts` when pairs are built) both compare `text_key`s, so they
agree; red-team dedup and attack ids use `normalise_text`; the refusal judge matches phrases on it.
"""

from __future__ import annotations

import re
import unicodedata

_QUOTES = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u00b4": "'",
        "`": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201f": '"',
        "\u2033": '"',
    }
)


def normalise_text(text: str) -> str:
    """Unicode NFKC, straight quotes, lowercase, single spaces, stripped."""
    text = unicodedata.normalize("NFKC", text or "").translate(_QUOTES).lower()
    return re.sub(r"\s+", " ", text).strip()


def text_key(text: str) -> str:
    """Dedup and contamination key: `normalise_text` with everything except letters and digits removed."""
    return re.sub(r"[\W_]+", "", normalise_text(text))
