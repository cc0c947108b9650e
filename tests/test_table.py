"""The tabular benchmark: a result table stands in for training, and the real search runs against it.

Unit tests use a small table made here; the search tests use the table mnms ships
(``bench/results/tabular.json.gz``: 180 architectures x 13 real tasks x 3 child seeds),
through the real ``Search``, strategies, trial log and checkpoints. A table-backed
search is deterministic and takes seconds, so it is the suite's fast search test.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from mnms.data.tasks import load_task
from mnms.executors.base import SequentialExecutor
from mnms.executors.trial import OK, PRUNED, TrialRequest
from mnms.search.config import SearchConfig
from mnms.search.job import SearchJob
from mnms.search.records import read_trials
from mnms.search.space import SearchSpace
from mnms.search.strategies import strategy_config
from mnms.search.table import ResultTable, TableError, TableRunner

SHIPPED = Path(__file__).parents[1] / "bench" / "results" / "tabular.json.gz"
SPACE = {
    "decisions": [
        {"name": "encoder", "choices": ["words", "char-ngrams"]},
        {"name": "hidden_layers", "choices": [0, 1]},
        {"name": "width_1", "choices": [64, 256], "when": {"hidden_layers": [1]}},
    ]
}


def small_table() -> ResultTable:
    """Two tasks over a 6-architecture space, two child seeds each; quality rises with a known order."""
    space = SearchSpace.from_config(SPACE)
    table = ResultTable(space, {"max_examples": 300})
    for t, task in enumerate(["trec", "langid-tatoeba"]):
        for a, arch in enumerate(space.architectures()):
            for seed in (0, 1):
                accuracy = 0.5 + 0.05 * a + 0.01 * seed + 0.1 * t
                curve = [accuracy - 0.2, accuracy - 0.1, accuracy]
                metrics = {"val_accuracy": accuracy, "val_curve": curve, "train_seconds": 1.0 + a, "epochs": 3}
                table.add(task, arch, {"seed": seed, "status": OK, "metrics": metrics, "error": None})
    return table


def test_a_table_ranks_by_mean_over_seeds_and_round_trips_through_its_file(tmp_path) -> None:
    table = small_table()
    assert table.space.size() == 6 == len(table.runs["trec"])
    best = table.ranked("trec")[0]
    assert json.loads(best) == {"encoder": "char-ngrams", "hidden_layers": 1, "width_1": 256}
    assert table.mean_val("trec")[best] == pytest.approx(0.755)
    table.save(tmp_path / "t.json.gz")
    loaded = ResultTable.load(tmp_path / "t.json.gz")
    assert loaded.runs == table.runs and loaded.fidelity == table.fidelity
    assert loaded.space.signature() == table.space.signature()
    # An inactive decision is not part of a key: a full architecture finds its row.
    assert table.key({"encoder": "words", "hidden_layers": 0, "width_1": 256, "dropout": 0.1}) in table.runs["trec"]


def test_a_table_that_cannot_answer_the_search_is_refused_naming_the_fix(tmp_path) -> None:
    table = small_table()
    table.check(table.space, ["trec"], {"max_examples": 300})
    wider = SearchSpace.from_config(
        {"decisions": [*SPACE["decisions"][:2], {**SPACE["decisions"][2], "choices": [64]}]}
    )
    with pytest.raises(TableError, match=r"built over a space with signature .* rebuild the table"):
        table.check(wider, ["trec"])
    with pytest.raises(TableError, match=r"no runs for \['sst2'\]"):
        table.check(table.space, ["sst2"])
    with pytest.raises(TableError, match=r"built at max_examples=300, the search runs at 1000"):
        table.check(table.space, ["trec"], {"max_examples": 1000})
    del table.runs["trec"][table.key({"encoder": "words", "hidden_layers": 1, "width_1": 64})]
    with pytest.raises(TableError, match=r"does not cover 1 architecture.*'width_1': 64.*bench.tabular build"):
        table.check(table.space, ["trec"])
    path = tmp_path / "t.json.gz"
    small_table().save(path)
    data = json.loads(gzip.decompress(path.read_bytes()))
    next(iter(data["runs"]["trec"].values()))[0]["status"] = "exploded"
    path.write_bytes(gzip.compress(json.dumps(data).encode()))
    with pytest.raises(TableError, match=r"status \['exploded'\]"):
        ResultTable.load(path)
    with pytest.raises(TableError, match="no result table at .* bench.tabular build"):
        ResultTable.load(tmp_path / "absent.json.gz")


def test_the_runner_answers_from_a_recorded_seed_and_replays_a_pruner_on_its_curve() -> None:
    table = small_table()
    runner = TableRunner(table, max_epochs=3)
    arch = {"encoder": "words", "hidden_layers": 0}
    answers = {runner(TrialRequest(0, "trec", arch, seed)).metrics["val_accuracy"] for seed in range(20)}
    assert answers == {0.5, 0.51}  # the search seed picks among both recorded child seeds
    outcome = runner(TrialRequest(0, "trec", arch, 3))
    assert outcome == runner(TrialRequest(0, "trec", arch, 3)) and outcome.status == OK
    assert outcome.wall_seconds == 1.0  # the recorded training time is the child's cost
    # A bar at epoch 1 above the curve stops the child there, with its cost so far.
    pruned = runner(TrialRequest(0, "trec", arch, 3, prune_below={1: 0.9}))
    assert pruned.status == PRUNED and pruned.metrics["epochs"] == 1
    assert pruned.metrics["val_accuracy"] == pytest.approx(outcome.metrics["val_accuracy"] - 0.2)
    assert pruned.wall_seconds == pytest.approx(1.0 / 3)
    assert runner(TrialRequest(0, "trec", arch, 3, prune_below={1: 0.1})).status == OK


def test_a_budget_larger_than_the_space_trains_each_architecture_once_then_warns_and_reuses(
    data_dir, tmp_path, caplog
) -> None:
    """Redraw (the default): 6 architectures per task and 10 trials each. Every architecture trains
    once; once a step draws nothing new the search warns that the task has settled, and the
    trials left take reused results, so the search still ends."""
    table = small_table()
    tasks = {name: load_task(name, data_dir, max_examples=300, seed=0) for name in table.tasks}
    cfg = SearchConfig(progress=False, trials=20, batch_size=4)
    job = SearchJob(tasks, table.space, tmp_path / "cache", strategy=strategy_config({"kind": "ppo"}), search=cfg)
    with caplog.at_level("WARNING", logger="mnms.search.loop"):
        summary = job.build(tmp_path / "run", executor=SequentialExecutor(TableRunner(table))).run()
    rows = read_trials(tmp_path / "run")
    assert len(rows) == 20 and summary["distinct"] == {"trec": 6, "langid-tatoeba": 6}
    trained = [(row.task, table.key(row.decisions)) for row in rows if row.reused_from is None]
    assert len(trained) == len(set(trained)) == 12  # nothing trained twice
    settled = [r.getMessage() for r in caplog.records if "its proposals have settled" in r.getMessage()]
    assert {message.split(":")[0] for message in settled} == {"trec", "langid-tatoeba"}
    assert all(0 < summary["repeat_fraction"][task] < 1 for task in tasks)


@pytest.fixture(scope="module")
def shipped() -> ResultTable:
    return ResultTable.load(SHIPPED)


def table_search(shipped, data_dir: Path, run_dir: Path, kind: str, tasks=("sst2", "langid-tatoeba"), **search):
    """A multitask search of ``tasks`` against the shipped table, at the table's fidelity."""
    fidelity = shipped.fidelity
    loaded = {name: load_task(name, data_dir, max_examples=fidelity["max_examples"], seed=0) for name in tasks}
    job = SearchJob(
        loaded,
        shipped.space,
        run_dir / "cache",
        strategy=strategy_config({"kind": kind}),
        search=SearchConfig(**{"progress": False, "trials": 48, **search}),
    )
    examples = {name: {s: len(d) for s, d in task.splits.items()} for name, task in loaded.items()}
    shipped.check(job.space, job.task_names, {"examples": {**fidelity["examples"], **examples}})
    search_run = job.build(run_dir, executor=SequentialExecutor(TableRunner(shipped)))
    return search_run, search_run.run()


def test_the_shipped_table_covers_its_space_at_its_stated_fidelity(shipped) -> None:
    assert shipped.space.size() == 180 and len(shipped.tasks) == 13
    shipped.check(shipped.space, shipped.tasks)
    assert shipped.fidelity["max_examples"] == 1000 and shipped.provenance["seeds"] == [0, 1, 2]
    assert set(shipped.provenance["held_out"]) <= set(shipped.tasks)
    for task in shipped.tasks:
        assert all(len(runs) == 3 for runs in shipped.runs[task].values())


@pytest.mark.parametrize("kind", ["ppo", "reinforce", "random", "optuna"])
def test_a_search_against_the_table_is_exact_and_trains_no_architecture_twice(kind, shipped, data_dir, tmp_path):
    search, summary = table_search(shipped, data_dir, tmp_path / "a", kind)
    rows = read_trials(tmp_path / "a")
    assert len(rows) == 48
    for row in rows:  # every reward is one of the table's recorded runs of that architecture
        recorded = {run["metrics"]["val_accuracy"] for run in shipped.runs[row.task][shipped.key(row.decisions)]}
        assert row.reward in recorded
    trained = [(row.task, shipped.key(row.decisions)) for row in rows if row.reused_from is None]
    assert len(trained) == len(set(trained)) == 48  # 180 architectures per task: nothing repeats
    assert summary["distinct"] == {"sst2": 24, "langid-tatoeba": 24}
    _, again = table_search(shipped, data_dir, tmp_path / "b", kind)
    assert [r.decisions for r in read_trials(tmp_path / "b")] == [r.decisions for r in rows]
    assert again["best"] == summary["best"]


@pytest.mark.slow
def test_the_benchmark_searches_every_task_resumably_and_its_report_scores_them(data_dir, tmp_path) -> None:
    """``bench.tabular search`` then ``bench.tabular_report``, small: 2 settings and transfer, 1 seed, 3 trials each."""
    from bench.tabular import Benchmark, load_results, search_all
    from bench.tabular_report import Scores, markdown

    out = tmp_path / "search.json.gz"
    settings = ["random", "ppo", "transfer"]
    search_all(settings, seeds=1, trials_per_task=3, out=out, workers=1)
    written = out.read_bytes()
    search_all(settings, seeds=1, trials_per_task=3, out=out, workers=1)  # nothing left to do
    assert out.read_bytes() == written
    shipped = ResultTable.load(SHIPPED)
    results = load_results(out, shipped)
    for name in ("random", "ppo"):
        found = results["3"][name]["0"]
        for task in shipped.tasks:
            tried = found["tasks"][task]["tried"]
            assert len(tried) >= 3 and len(set(tried)) == len(tried)  # redrawn: no task trains a repeat
            assert all(key in shipped.runs[task] for key in tried)
        probable = {found["tasks"][task]["most_probable"] for task in shipped.tasks}
        assert (probable == {None}) == (name == "random")
    bench = Benchmark.load()
    transfer = results["3"]["transfer"]["0"]
    assert set(transfer) == {"transfer", "transfer-descriptor", "scratch", "random"}
    assert all(set(by_task) == set(bench.held_out) for by_task in transfer.values())
    for mode in ("transfer", "transfer-descriptor"):  # each starts from its prior
        assert transfer[mode]["mr"]["tried"] != transfer["scratch"]["mr"]["tried"]
    report = markdown(Scores(shipped, results, 3), bench)
    assert "| ppo | held out |" in report and "is-spanish (held out)" in report
    assert "scratch / transfer |" in report and "scratch / transfer-descriptor |" in report
