"""Decay: zones 0 (core) .. 4 (cloud) per note and event, recall promotes, idleness demotes, and
items idle in the cloud are forgotten (tombstoned, a note's file moved to the vault's trash).

A self-contained plug-in over the store's ``DecaySql`` methods:

* :class:`Decay` — ``run(now=None, dry_run=False) -> DecayReport``, ``forget(id, reason)``,
  ``restore(id)``, ``apply_touches(cur, touches)`` (the writer's hook), ``health()``;
* :class:`DecayScheduler` — runs decay every ``decay.interval``, one process at a time (a lease
  row in the database);
* :func:`read_decay_config` — the ``decay:`` section as a frozen :class:`DecayConfig`.
"""

from __future__ import annotations

from ._config import ZONE_NAMES, DecayConfig, read_decay_config
from ._plugin import Decay, DecayScheduler, ForgetResult, RestoreResult
from ._policy import DecayReport

__all__ = ["ZONE_NAMES", "Decay", "DecayConfig", "DecayReport", "DecayScheduler", "ForgetResult", "RestoreResult",
           "read_decay_config"]
