"""The live watcher: watchdog events → debounce → one sync per burst.

The event handler only notes that something relevant happened (a note path, or a folder in
``md/`` / ``knowledge/``); editors' temporary files and hidden folders are ignored at once. A
single thread sleeps on an Event — no polling, ~0 CPU while idle — and when events arrive waits
for ``debounce_ms`` of quiet (at most ``max_delay`` after the first event) before one
incremental sync: a ``git checkout`` of 1,000 files is one batch. The service's own writes need
no special case: their digest is already the last synced one, so the sync finds nothing to do.
While the database is behind, the same thread retries every ``retry_s``.

The observer starts *before* the initial sync: a cold sync of a large vault takes seconds, and
an edit made meanwhile to a file the sync had already read would otherwise reach the database
only at the next unrelated event. Events that arrive during any sync leave the vault marked as
behind (health says so) and trigger a follow-up sync once they settle.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from ._vault import Vault

log = logging.getLogger("memory.vault")


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: VaultWatcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = [str(event.src_path), str(getattr(event, "dest_path", "") or "")]
        if any(p and self.watcher.vault.is_relevant(p) for p in paths):
            self.watcher.poke()


class VaultWatcher:
    """initialize / loop_once / shutdown, driven by a threading.Event."""

    def __init__(self, vault: Vault, debounce_s: float, max_delay_s: float = 1.0, retry_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic, on_sync: Callable[[], None] | None = None,
                 prepare: Callable[[], None] | None = None) -> None:
        self.prepare = prepare  # run once before the first sync (the service brings the schema to head)
        self.vault, self.debounce, self.max_delay, self.retry_s = vault, debounce_s, max_delay_s, retry_s
        self.clock = clock
        self.on_sync = on_sync
        self._event = threading.Event()
        self._stop = threading.Event()
        self._first = 0.0
        self._last = 0.0
        self._lock = threading.Lock()
        self.observer: Observer | None = None  # type: ignore[valid-type]
        self.thread: threading.Thread | None = None
        self.syncs = 0

    def poke(self) -> None:
        now = self.clock()
        with self._lock:
            if not self._event.is_set():
                self._first = now
            self._last = now
        self._event.set()

    def initialize(self) -> None:
        self.vault.root.mkdir(parents=True, exist_ok=True)
        observer = Observer()
        observer.schedule(_Handler(self), str(self.vault.root), recursive=True)
        observer.daemon = True
        observer.start()
        self.observer = observer

    def due(self, now: float) -> float:
        """Seconds until the pending burst should be synced (0: now)."""
        with self._lock:
            quiet_at = self._last + self.debounce
            latest = self._first + self.max_delay
        return max(0.0, min(quiet_at, latest) - now)

    def loop_once(self, now: float) -> float:
        """Sync if a burst has settled (or the database is behind). Returns how long to wait."""
        if self._event.is_set():
            wait = self.due(now)
            if wait > 0:
                return wait
            self._event.clear()
        elif not self.vault.db_pending:
            return -1  # nothing to do: sleep until the next file event
        try:
            self.vault.sync(reconcile=self.vault.db_pending)
            self.syncs += 1
            if self.on_sync is not None:
                self.on_sync()
        except Exception:  # noqa: BLE001 - the watcher must survive anything a file can do
            log.exception("vault sync failed; will retry")
        return self.after_sync()

    def after_sync(self) -> float:
        """How long to wait after a sync. Files that changed while it ran may not be in it."""
        if self._event.is_set():
            self.vault.db_pending = True
            return self.due(self.clock())
        return self.retry_s if self.vault.db_pending else -1

    def run(self) -> None:
        wait = 0.0
        while not self._stop.is_set():
            if wait < 0:
                self._event.wait()  # idle: blocked until a relevant file event (or shutdown)
            elif wait > 0:
                if self._event.is_set():
                    self._stop.wait(wait)  # a burst is settling
                else:
                    self._event.wait(wait)  # retrying the database; a file event wakes us early
            if self._stop.is_set():
                break
            wait = self.loop_once(self.clock())

    def start(self, initial_sync: bool = True, watch: bool = True) -> None:
        def main() -> None:
            if self.prepare is not None:
                try:
                    self.prepare()
                except Exception as exc:  # noqa: BLE001 - the database may be down: sync retries
                    log.warning("vault: database not ready (%s); the first sync will retry", exc)
            watching = False
            if watch:  # before the initial sync, so edits made during it are seen (module docstring)
                try:
                    with self._lock:  # shutdown() either sees this observer or keeps it from starting
                        if self._stop.is_set():
                            return
                        self.initialize()
                    watching = True
                except Exception:  # noqa: BLE001 - still sync once, and retry while the DB is behind
                    log.exception("cannot watch %s; live sync is off", self.vault.root)
            if initial_sync:
                try:
                    self.vault.sync(reconcile=True)
                except Exception:  # noqa: BLE001
                    log.exception("initial vault sync failed; will retry")
            if not watching:
                while self.vault.db_pending and not self._stop.wait(self.retry_s):
                    try:
                        self.vault.sync(reconcile=True)
                    except Exception:  # noqa: BLE001
                        log.exception("vault sync failed; will retry")
                return
            self.run()

        self.thread = threading.Thread(target=main, name="memory-vault", daemon=True)
        self.thread.start()

    def shutdown(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stop.set()
            observer = self.observer
        self._event.set()
        if observer is not None:
            observer.stop()
            observer.join(timeout)
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout)
