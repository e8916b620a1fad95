"""When two runs are the same run: the one rule for reusing a finished run, resuming an unfinished one
and refusing a directory that holds a run of other settings.

Two resolved run configurations (``asdict(RunConfig.check())``, or the ``config`` a run recorded) are the
same run when they agree on every setting that decides the results (:func:`result_settings`): the
settings that never change a result (progress, data folder, device) are left out, and so are the
settings the run's method does not read (CLNP's L1 for EWC). A setting added since the first release
counts, in a run recorded without it, as the value that reproduces that run.
"""

from __future__ import annotations

NOT_RESULTS = ("progress", "data_dir", "device")
"""Configuration fields that do not change a run's results (on a device of another kind, the same to float
rounding, not to the bit)."""
ADDED_FIELDS = {"finetune_lr": None, "method_revision": 0}
"""Config fields added since the first release, with the value that reproduces a run recorded without them."""


def result_settings(config: dict) -> dict:
    """The settings of a run configuration that decide its results, for its method."""
    from .config import READ_ONLY_BY  # (not at the top: reading a run's results needs no torch)

    method = config.get("method")
    unread = {name for name, readers in READ_ONLY_BY.items() if method not in readers}
    return {k: v for k, v in {**ADDED_FIELDS, **config}.items() if k not in NOT_RESULTS and k not in unread}


def same_run(config: dict, other: dict) -> bool:
    """Whether two run configurations (dicts) give the same results (a setting one lacks counts as None)."""
    ours, theirs = result_settings(config), result_settings(other)
    return all(ours.get(k) == theirs.get(k) for k in ours.keys() | theirs.keys())


def differences(ours: dict, theirs: dict, here: str = "here", there: str = "there", most: int = 3,
                sep: str = ", ") -> str:
    """The settings in which run ``theirs`` differs from ``ours``, ``most`` of them
    (``epochs 1 there, 2 here``)."""
    ours, theirs = result_settings(ours), result_settings(theirs)
    keys = list(ours) + [k for k in theirs if k not in ours]
    diff = [f"{k} {theirs.get(k)!r} {there}, {ours.get(k)!r} {here}" for k in keys if theirs.get(k) != ours.get(k)]
    return sep.join(diff[:most]) + (f"{sep}..." if len(diff) > most else "")
