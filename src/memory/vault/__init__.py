"""The Markdown vault: layout, parsing, change planning (pure), sync and the live watcher."""

from ._plan import FileState, Known, Plan, plan
from ._vault import Note, SyncReport, Vault
from ._watch import VaultWatcher

__all__ = ["FileState", "Known", "Note", "Plan", "SyncReport", "Vault", "VaultWatcher", "plan"]
