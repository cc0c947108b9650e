"""What kind of search a run is, read from what it is: its strategy, its tasks, its starting point, its study.

The report groups runs by this mode and W&B labels them with it (``job_type``), so a
label can never disagree with the run: an Optuna baseline is ``optuna`` whatever
experiment it was started from, and a run pre-trained elsewhere is ``transfer``.
"""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig, OmegaConf

from mnms.search.strategies import STRATEGIES


def search_mode(
    strategy: str,
    tasks: Sequence[str],
    *,
    trains_controller: bool,
    transfer_from: str | None = None,
    transfer_init: str = "random",
    study_mode: str | None = None,
) -> str:
    """The mode of a search of ``tasks`` by ``strategy``.

    A study job is its study mode (``conf/study/``). Otherwise a search that starts from a
    pre-trained controller is ``transfer`` (``transfer-descriptor``, as the study names it, when the new tasks start
    at their descriptors); a strategy that trains no controller is its own name (``random``,
    ``optuna``); a controller trained from scratch is ``scratch`` on one task and
    ``multitask`` on several.
    """
    if study_mode:
        return study_mode
    if transfer_from:
        return "transfer-descriptor" if transfer_init == "descriptor" else "transfer"
    if not trains_controller:
        return strategy
    return "scratch" if len(tasks) == 1 else "multitask"


def _strategy_kind(cfg: DictConfig) -> str | None:
    """The run's strategy; run dirs written before strategies had their own group named it ``controller.kind``."""
    return OmegaConf.select(cfg, "strategy.kind") or OmegaConf.select(cfg, "controller.kind")


def run_mode(cfg: DictConfig) -> str:
    """What the search that recorded ``cfg`` is (``mnms.search.mode.search_mode``)."""
    kind = _strategy_kind(cfg)
    tasks = OmegaConf.select(cfg, "tasks") or ()
    return search_mode(
        kind,
        [tasks] if isinstance(tasks, str) else list(tasks),  # tasks=mr, before the search reads it as [mr]
        trains_controller=kind in STRATEGIES and STRATEGIES[kind].trains_controller,
        transfer_from=OmegaConf.select(cfg, "transfer.from"),
        transfer_init=OmegaConf.select(cfg, "transfer.init") or "random",
        study_mode=OmegaConf.select(cfg, "study.mode"),
    )
