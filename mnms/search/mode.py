"""What kind of search a run is, read from what it is: its strategy, its tasks, its starting point, its study.

The report groups runs by this mode and W&B labels them with it (``job_type``), so a
label can never disagree with the run: an Optuna baseline is ``optuna`` whatever
experiment it was started from, and a run pre-trained elsewhere is ``transfer``.
"""

from __future__ import annotations

from collections.abc import Sequence


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
    pre-trained controller is ``transfer`` (``transfer_descriptor`` when the new tasks start
    at their descriptors); a strategy that trains no controller is its own name (``random``,
    ``optuna``); a controller trained from scratch is ``scratch`` on one task and
    ``multitask`` on several.
    """
    if study_mode:
        return study_mode
    if transfer_from:
        return "transfer_descriptor" if transfer_init == "descriptor" else "transfer"
    if not trains_controller:
        return strategy
    return "scratch" if len(tasks) == 1 else "multitask"
