"""bench.fidelity_rank: how a small fidelity's rewards rank children against the whole task's, from its runs file."""

from __future__ import annotations

import json

import pytest

from bench import fidelity_rank


def test_spearman_ranks_ties_by_their_mean_rank() -> None:
    assert fidelity_rank.ranks([0.3, 0.1, 0.2, 0.2]) == [4.0, 1.0, 2.5, 2.5]
    assert fidelity_rank.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert fidelity_rank.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)


def test_the_report_scores_each_fidelity_against_the_whole_task(tmp_path, monkeypatch) -> None:
    """Runs written as ``run`` writes them: 500 ranks children backwards, 1000 and 2000 as the whole task does."""
    monkeypatch.setattr(fidelity_rank, "OUT", tmp_path)
    monkeypatch.setattr(fidelity_rank, "TASKS", ("trec",))
    archs = fidelity_rank.architectures(6)
    lines = []
    for fidelity, seed in [(500, 0), (1000, 0), (2000, 0), (None, 0), (None, 1)]:
        for i, arch in enumerate(archs):
            accuracy = 0.5 + 0.05 * (5 - i if fidelity == 500 else i)
            metrics = {"val_accuracy": accuracy, "train_seconds": 1.0 if fidelity else 10.0}
            run = {"task": "trec", "fidelity": fidelity, "seed": seed, "arch": arch, "status": "ok", "metrics": metrics}
            lines.append(json.dumps({**run, "error": None}))
    (tmp_path / "runs-0.jsonl").write_text("\n".join(lines) + "\n")
    rows = fidelity_rank.scores(6)["tasks"]["trec"]
    assert rows["500"]["spearman"] == pytest.approx(-1.0) and rows["500"]["pick_regret"] == pytest.approx(25.0)
    assert rows["1000"] == {"spearman": 1.0, "best_in_top5": True, "pick_regret": 0.0, "median_train_seconds": 1.0}
    assert rows["whole"] == {"median_train_seconds": 10.0}
    assert "| trec | -1.00 [25.0]" in fidelity_rank.markdown(fidelity_rank.scores(6))


def test_a_report_of_an_unfinished_study_names_what_is_missing(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(fidelity_rank, "OUT", tmp_path)
    with pytest.raises(SystemExit, match=r"sst2 at the whole task \(seed 0\) is incomplete: run `python -m bench"):
        fidelity_rank.scores(6)
