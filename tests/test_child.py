"""Real children on real tasks through a real Lightning Trainer."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lightning_modules.trainer
from lightning_modules.trainer import evaluate_child
from mnms.child.arch import Architecture
from mnms.child.config import ChildTrainerConfig
from mnms.child.result import ChildTimeout
from mnms.data.feature_cache import FeatureCache
from mnms.data.tasks import load_task

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_minilm_child_learns_sst2(data_dir, session_cache_dir) -> None:
    # 2000 training sentences (stratified) keep the MiniLM encoding to ~5k sentences;
    # validation is the full official split.
    task = load_task("sst2", data_dir, max_examples=2000)
    assert len(task.splits["validation"].texts) == 872
    result = evaluate_child(
        task, Architecture(encoder="minilm"), ChildTrainerConfig(max_epochs=5), FeatureCache(session_cache_dir), seed=0
    )
    assert result.val_accuracy >= 0.75, result
    assert 0.5 < result.test_accuracy <= 1.0 and 0.0 < result.val_macro_f1 <= 1.0


@pytest.mark.slow
def test_char_ngram_child_identifies_languages(data_dir, session_cache_dir) -> None:
    task = load_task("langid-tatoeba", data_dir, max_examples=2000)
    arch = Architecture(encoder="char-ngrams", hidden_layers=0, learning_rate=0.01)
    result = evaluate_child(task, arch, ChildTrainerConfig(max_epochs=5), FeatureCache(session_cache_dir), seed=0)
    assert result.val_accuracy >= 0.90, result


def test_same_seed_same_metrics_and_second_run_hits_the_cache(data_dir, tmp_path) -> None:
    task = load_task("trec", data_dir, max_examples=600, seed=0)
    arch = Architecture(encoder="words", batch_size=32)
    budget = ChildTrainerConfig(max_epochs=2)
    first = evaluate_child(task, arch, budget, FeatureCache(tmp_path), seed=3)
    second_cache = FeatureCache(tmp_path)
    second = evaluate_child(task, arch, budget, second_cache, seed=3)
    other_seed = evaluate_child(task, arch, budget, FeatureCache(tmp_path), seed=4)
    assert (first.val_accuracy, first.test_macro_f1) == (second.val_accuracy, second.test_macro_f1)
    assert not first.features_from_cache and second.features_from_cache
    assert second_cache.hits > 0 and second_cache.misses == 0
    assert other_seed.val_accuracy != first.val_accuracy or other_seed.test_accuracy != first.test_accuracy


def test_child_trains_with_the_configured_threads_and_restores_the_callers(data_dir, tmp_path, monkeypatch) -> None:
    with pytest.raises(ValueError, match="trainer.threads=0 must be an integer >= 1"):
        ChildTrainerConfig(threads=0)
    seen: list[int] = []
    real_build_trainer = lightning_modules.trainer.build_trainer

    def spying_build_trainer(cfg, *callbacks):
        seen.append(torch.get_num_threads())
        return real_build_trainer(cfg, *callbacks)

    monkeypatch.setattr(lightning_modules.trainer, "build_trainer", spying_build_trainer)
    task = load_task("trec", data_dir, max_examples=300, seed=0)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        evaluate_child(
            task,
            Architecture(encoder="words", batch_size=32),
            ChildTrainerConfig(max_epochs=1, threads=1),
            FeatureCache(tmp_path),
            seed=0,
        )
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_overrunning_child_is_stopped_and_scored_on_its_best_epoch_so_far(data_dir, tmp_path) -> None:
    task = load_task("trec", data_dir, max_examples=600, seed=0)
    budget = ChildTrainerConfig(max_epochs=1000, patience=None, time_limit_s=1.0)
    result = evaluate_child(task, Architecture(encoder="words", batch_size=8), budget, FeatureCache(tmp_path), seed=0)
    assert result.stopped_by == "time_limit"
    assert 1 <= result.epochs < 1000 and len(result.val_curve) >= result.epochs
    assert result.val_accuracy == max(result.val_curve)
    assert result.val_curve[result.best_epoch - 1] == result.val_accuracy


def test_overrunning_child_with_no_validated_epoch_is_a_timeout(data_dir, tmp_path) -> None:
    task = load_task("trec", data_dir, max_examples=600, seed=0)
    # No validation before the end (every epoch trained, the last one scored): nothing to score it on.
    budget = ChildTrainerConfig(max_epochs=1000, patience=None, epoch_selection="last", time_limit_s=0.5)
    with pytest.raises(ChildTimeout, match="time_limit_s=0.5"):
        evaluate_child(task, Architecture(encoder="words", batch_size=8), budget, FeatureCache(tmp_path), seed=0)


@pytest.mark.slow
def test_train_py_child_mode_writes_result_json(data_dir, tmp_path) -> None:
    run_dir = tmp_path / "run"
    env = {**os.environ, "MNMS_CACHE_DIR": str(tmp_path / "cache")}
    command = [
        sys.executable,
        "train.py",
        "mode=child",
        "task=trec",
        "child.arch.encoder=words",
        "trainer.max_epochs=2",
        "max_examples=800",
        f"hydra.run.dir={run_dir}",
    ]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["task"] == "trec" and result["arch"]["encoder"] == "words"
    assert 0.3 < result["metrics"]["val_accuracy"] <= 1.0
    assert "val_accuracy" in done.stdout and "result.json" in done.stdout
    # The README's third command: the saved model classifies a text file, through train.py.
    (tmp_path / "questions.txt").write_text("Who wrote Hamlet ?\nWhere is Lima ?\n")
    predict = [sys.executable, "train.py", "mode=predict", f"model={run_dir / 'model'}"]
    predict += [
        f"input={tmp_path / 'questions.txt'}",
        f"output={tmp_path / 'p.csv'}",
        f"hydra.run.dir={tmp_path / 'p'}",
    ]
    done = subprocess.run(predict, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0].startswith("text,prediction,prob_abbreviation") and len(lines) == 3
    assert "2 texts of" in done.stdout
