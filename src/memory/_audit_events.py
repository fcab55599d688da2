"""The audit log's event types (a leaf module: the queue, the vault and plug-ins name them too)."""

from __future__ import annotations

RECALL = "recall"
FORGET = "forget"
RESTORE = "restore"
ZONE_CHANGE = "zone_change"
DECAY_RUN = "decay_run"
DEAD_LETTER = "dead_letter"
VAULT_CONFLICT = "vault_conflict"
OUTAGE_START = "outage_start"
OUTAGE_END = "outage_end"
REPLAY_START = "replay_start"
REPLAY_END = "replay_end"
EVENT_TYPES: tuple[str, ...] = (RECALL, FORGET, RESTORE, ZONE_CHANGE, DECAY_RUN, DEAD_LETTER, VAULT_CONFLICT,
                                OUTAGE_START, OUTAGE_END, REPLAY_START, REPLAY_END)
