"""From-scratch hashed bags: fastText-style character n-grams and word uni+bigrams.

Features are hashed into ``buckets`` with CRC-32, which (unlike Python's salted ``hash``) gives
the same ids in every process, so cached bags stay valid across workers and runs.
"""

from __future__ import annotations

import re
import zlib
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from mnms.data.encoders.bags import BagEncoder, Ragged, first_words

# Words and single punctuation marks; \w is Unicode-aware, so accents and non-Latin scripts stay whole.
TOKEN = re.compile(r"\w+|[^\w\s]")


def stable_hash(feature: str, buckets: int) -> int:
    return zlib.crc32(feature.encode("utf-8")) % buckets


class HashedEncoder(BagEncoder):
    """Tokenise with :data:`TOKEN`, turn the tokens into hashed feature ids (subclass)."""

    defaults = {
        **BagEncoder.defaults,
        "lowercase": True,
        "buckets": 2**20,  # hash space before compaction to the features train uses
        "min_count": 2,  # rarer features in train (and unseen ones) are dropped
        "dim": 64,  # (runtime) table width = the input layer's output width
    }

    def __init__(self, name: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, options)
        self.require_positive_ints("buckets", "min_count", "dim")

    @abstractmethod
    def feature_ids(self, tokens: list[str], limit: int) -> list[int]:
        """Hashed feature ids of one text in text order; may stop once ``limit`` are made."""

    def raw_ids(self, texts: Sequence[str]) -> Ragged:
        limit, lower = self.options["max_tokens"], self.options["lowercase"]
        heads = (first_words(t, limit) for t in texts)
        return Ragged.from_lists(self.feature_ids(TOKEN.findall(h.lower() if lower else h), limit) for h in heads)


class CharNgramEncoder(HashedEncoder):
    """Character n-grams of each token wrapped in ``<``/``>`` boundary markers (as fastText)."""

    defaults = {
        **HashedEncoder.defaults,
        "ngram_range": [1, 4],  # [min, max] n-gram length, in characters
        "boundary_markers": True,  # wrap tokens in "<" ">" so prefixes and suffixes are distinct features
        "max_tokens": 1024,  # n-grams kept per text: a sentence of about 100 characters has several hundred
    }

    def __init__(self, name: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, options)
        lo_hi = self.options["ngram_range"]
        if not (isinstance(lo_hi, list) and len(lo_hi) == 2 and 1 <= lo_hi[0] <= lo_hi[1]):
            raise ValueError(f"{name}: ngram_range must be [min, max] with 1 <= min <= max, got {lo_hi!r}")
        self._memo: dict[str, list[int]] = {}  # token -> ids; cleared per raw_ids call

    def raw_ids(self, texts: Sequence[str]) -> Ragged:
        try:  # tokens repeat a lot within a task: hash each distinct token's n-grams once
            return super().raw_ids(texts)
        finally:
            self._memo.clear()

    def feature_ids(self, tokens: list[str], limit: int) -> list[int]:
        ids: list[int] = []
        for token in tokens:
            if len(ids) >= limit:
                break
            if token not in self._memo:
                self._memo[token] = self._token_ids(token)
            ids.extend(self._memo[token])
        return ids

    def _token_ids(self, token: str) -> list[int]:
        lo, hi = self.options["ngram_range"]
        marked = self.options["boundary_markers"]
        word = f"<{token}>" if marked else token
        first, last = (1, len(word) - 1) if marked else (0, len(word))
        buckets = self.options["buckets"]
        return [
            stable_hash(word[i : i + n], buckets)
            for i in range(len(word))
            for n in range(lo, hi + 1)
            if i + n <= len(word) and (n > 1 or first <= i < last)  # a lone marker is no feature
        ]


class WordEncoder(HashedEncoder):
    """Word unigrams and (optionally) bigrams, interleaved in text order."""

    defaults = {**HashedEncoder.defaults, "bigrams": True}  # bigrams: add "w1 w2" features next to each unigram

    def feature_ids(self, tokens: list[str], limit: int) -> list[int]:
        buckets, bigrams = self.options["buckets"], self.options["bigrams"]
        ids: list[int] = []
        for i, token in enumerate(tokens):
            if len(ids) >= limit:
                break
            ids.append(stable_hash(token, buckets))
            if bigrams and i > 0:
                ids.append(stable_hash(f"{tokens[i - 1]} {token}", buckets))
        return ids
