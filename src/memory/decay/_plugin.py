"""The decay plug-in: ``Decay`` (run, forget, restore, touches, health) and ``DecayScheduler``.

Guarantees:

* **A run is set-based and bounded.** Each step (adopt a page, forget a batch, demote a batch, move
  one forgotten note's file) is one short transaction of at most ``batch_size`` items, so writers
  wait at most one batch; ``forget`` and ``restore`` in this process wait at most one step too (the
  plug-in's lock is held per step, not per run). A run
  moves an item at most one zone (a demotion restarts its idle time), forgets only items idle in
  zone 4 for ``auto_forget_days``, and never touches pinned notes or anything under ``md/``.
* **``dry_run`` changes nothing**: the same steps run in one transaction that is rolled back, and
  no file moves, so the report is exactly what a run at that moment would do. (On SQLite that
  transaction holds the write lock for the whole dry run; writers wait, bounded by busy_timeout.)
* **A leased run keeps its lease.** ``keep_alive`` is asked before every step, adoption pages and
  file moves included; when it says no (the lease was lost, or the service is stopping) the run
  stops there, reported in ``aborted``.
* **Forgetting a note never loses it.** The tombstone (with the row) commits first, marked
  ``pending``; then the file moves into the trash and the tombstone records where. A process
  stopping in between leaves ``pending``, which every run (and a repeated ``forget``) completes.
  The file moves only if it is still the note that was forgotten (its SHA-256, as the vault
  digests notes, equals the tombstone's): a different file written at that path since is left
  where it is, recorded as ``replaced`` and reported.
* **Restore is the reverse**: the file goes back first (refused if its place is taken), then one
  transaction deletes the tombstone, puts the row back, gives it a fresh state row and queues it
  for the recall index; if that transaction fails, the file returns to the trash.
* **Nothing raises into a thread.** ``DecayScheduler`` counts and logs failures; ``health``
  reports a database it cannot read as a problem, not an exception.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .._audit_events import DECAY_RUN, FORGET, RESTORE, ZONE_CHANGE
from .._errors import StoreError
from ..store._decay import CLOUD, KINDS, TombstoneRow
from ..store._recall import KIND_EVENT, KIND_NOTE
from . import _policy
from ._config import ZONE_NAMES, DecayConfig
from ._trash import TrashError, TrashMissing, TrashReplaced, move_to_trash, restore_from_trash

log = logging.getLogger("memory.decay")

Audit = Callable[..., None]
LEASE = "decay"
MAX_ID = 255
LOST = "stopped: the service is shutting down or the decay lease was lost to another process"


@dataclasses.dataclass(frozen=True)
class ForgetResult:
    ok: bool
    item_id: str
    kind: str | None = None
    message: str = ""
    trash_path: str | None = None


@dataclasses.dataclass(frozen=True)
class RestoreResult:
    ok: bool
    item_id: str
    kind: str | None = None
    message: str = ""


class _Rollback(BaseException):  # noqa: N818 - not an error: passes the store's error mapping untouched
    """Ends a dry run's transaction (rolled back by ``store.transaction``)."""


@dataclasses.dataclass
class _Progress:
    """A run's answer to "go on?": ``keep_alive`` asked before each step, until it first says no."""

    alive: Callable[[], bool]
    aborted: str | None = None

    def go(self) -> bool:
        if self.aborted is None and not self.alive():
            self.aborted = LOST
        return self.aborted is None


def _holder_id() -> str:
    return f"{socket.gethostname()[:100]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class _Steps:
    """The step lock, requests first. A run takes it per step, ``forget``/``restore`` per request;
    a run's next step waits while a request waits, so a request waits for at most the step in
    progress. (``threading.Lock`` is not fair: a run re-taking it at once after each step starved
    a waiting request for the whole run on a busy machine.) A run waits at most ``patience``
    seconds for requests, so a stream of them cannot stall it for good either."""

    def __init__(self, patience: float = 30.0) -> None:
        self._lock = threading.Lock()
        self._turn = threading.Condition()
        self._waiting = 0
        self._patience = patience

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        with self._turn:
            self._waiting += 1
        try:
            with self._lock:
                yield
        finally:
            with self._turn:
                self._waiting -= 1
                self._turn.notify_all()

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        with self._turn:
            self._turn.wait_for(lambda: self._waiting == 0, timeout=self._patience)
        with self._lock:
            yield


class Decay:
    """Decay over one store; a plug-in of the service (``start`` / ``stop`` / ``health``, see
    ``memory._plugin``). ``vault_root`` is needed to forget and restore notes (their files);
    ``audit`` is a callable ``audit(event, **fields)`` or an audit sink with ``emit`` (forget,
    restore, one zone-change line per run, the run). With ``enabled: false`` nothing runs on its
    own and ``run``/``apply_touches``/``health`` answer empty without a query; ``forget`` and
    ``restore`` still work (they are requests, not decay)."""

    def __init__(self, store: Any, config: DecayConfig | None = None, *, vault_root: Path | str | None = None,
                 audit: Audit | Any | None = None, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.config = config or DecayConfig()
        self.vault_root = Path(vault_root) if vault_root is not None else None
        self._audit_fn: Audit | None = getattr(audit, "emit", audit) if audit is not None else None
        self.clock = clock
        self.scheduler: DecayScheduler | None = None
        # One run at a time in this process; and one step (a run's transaction or file move, or
        # a whole forget/restore) at a time, so a request waits for one step, never for a run.
        self._run_lock = threading.Lock()
        self._steps = _Steps()

    # -- the plug-in contract ------------------------------------------------------------------------
    def start(self) -> None:
        """Start the scheduler thread (only when enabled; never in ``__init__``)."""
        if self.config.enabled and self.scheduler is None:
            self.scheduler = DecayScheduler(self)
            self.scheduler.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the scheduler within ``timeout``; never raises; safe to call twice."""
        if self.scheduler is not None:
            with contextlib.suppress(Exception):
                self.scheduler.stop(timeout)

    # -- helpers -----------------------------------------------------------------------------------
    def _audit(self, event: str, **fields: Any) -> None:
        if self._audit_fn is not None:
            try:
                self._audit_fn(event, **fields)
            except Exception as exc:  # noqa: BLE001 - an audit sink must never break decay
                log.warning("decay: audit sink failed: %s", exc)

    @contextlib.contextmanager
    def _tx(self, shared: Any | None) -> Iterator[Any]:
        """One step: a transaction of its own under the step lock, or the dry run's shared one
        (whose run holds the lock throughout)."""
        if shared is not None:
            yield shared
            return
        with self._steps.step(), self.store.transaction() as cur:
            yield cur

    # -- the touch hook (called by the writer inside its transaction) -------------------------------
    def apply_touches(self, cur: Any, touches: Sequence[tuple[str, str, float]]) -> int:
        """Apply recall touches ``(kind, item_id, at)`` within the writer's transaction (0 when disabled)."""
        if not self.config.enabled or not touches:
            return 0
        return int(self.store.apply_touches(cur, touches, self.config.initial_zones))

    @staticmethod
    def touches_for(hits: Sequence[Any], at: float) -> list[tuple[str, str, float]]:
        """Touch records for recall hits (objects with ``kind`` and ``id``, or ``(kind, id)`` pairs)."""
        out: list[tuple[str, str, float]] = []
        for h in hits:
            kind, item_id = (h[0], h[1]) if isinstance(h, (tuple, list)) else (getattr(h, "kind", None),
                                                                               getattr(h, "id", None))
            if kind in KINDS and isinstance(item_id, str) and item_id:
                out.append((kind, item_id, float(at)))
        return out

    # -- the run -----------------------------------------------------------------------------------
    def run(self, now: float | None = None, dry_run: bool = False,
            keep_alive: Callable[[], bool] | None = None) -> _policy.DecayReport:
        """Adopt new items, forget idle zone-4 items, demote idle items one zone; move forgotten
        notes' files. ``keep_alive`` is asked before every step (the scheduler renews its lease);
        False stops the run, reported in ``aborted``. Raises StoreError if the database fails."""
        t0 = time.perf_counter()
        now = float(self.clock() if now is None else now)
        if not self.config.enabled:
            return _policy.DecayReport(started_at=now, dry_run=dry_run, aborted="decay is disabled (decay.enabled)")
        with self._run_lock:
            if not dry_run:
                return self._run(now, None, _Progress(keep_alive or (lambda: True)), t0)
            # keep_alive is not asked: a dry run is one transaction, over before a lease could lapse.
            # It holds the step lock throughout (forget/restore would wait on its database lock anyway).
            report: list[_policy.DecayReport] = []
            try:
                with self._steps.step(), self.store.transaction() as cur:
                    report.append(self._run(now, cur, _Progress(lambda: True), t0))
                    raise _Rollback
            except _Rollback:
                pass
            return report[0]

    def run_leased(self, holder: str | None = None, *, min_interval: float = 0.0, dry_run: bool = False,
                   wall: Callable[[], float] | None = None,
                   stop: Callable[[], bool] | None = None) -> _policy.DecayReport | None:
        """``run`` while holding the database lease, so no other process runs decay meanwhile.

        None if another process holds the lease (or, with ``min_interval``, ran within it). The
        lease is renewed before every step of the run (at most every tenth of ``lease_ttl``: each
        renewal is a write) and given up afterwards; a real run records its time and summary in
        the lease row (what ``health`` shows). A failed run records nothing. ``stop`` (the
        scheduler's shutdown) ends the run at its next step, reported in ``aborted``.
        """
        if not self.config.enabled:
            return self.run(dry_run=dry_run)
        wall = wall or self.clock
        holder = holder or _holder_id()
        ttl = self.config.lease_ttl_s
        if not self.store.take_lease(LEASE, holder, wall(), ttl, min_interval):
            return None
        started, report = wall(), None
        renewed = [started]

        def keep_alive() -> bool:
            if stop is not None and stop():
                return False
            at = wall()
            if at - renewed[0] < ttl / 10:
                return True
            renewed[0] = at
            return bool(self.store.renew_lease(LEASE, holder, at, ttl))

        try:
            report = self.run(now=started, dry_run=dry_run, keep_alive=keep_alive)
        finally:
            record = report is not None and not dry_run
            self.store.release_lease(LEASE, holder, started if record else None,
                                     json.dumps(report.summary()) if record and report is not None else None)
        return report

    def _run(self, now: float, shared: Any | None, progress: _Progress, t0: float) -> _policy.DecayReport:
        cfg, cuts, batch = self.config, _policy.cutoffs(now, self.config), self.config.batch_size
        dry = shared is not None
        adopted, protected = self._adopt(now, shared, progress), 0
        if progress.go():
            with self._tx(shared) as cur:
                protected = self.store.count_protected(cur, cfg.min_zone_for_decay, cuts.decay, cuts.forget)
        forgotten: list[str] = []
        after: tuple[float, str, str] | None = None
        while progress.go():
            with self._tx(shared) as cur:
                found = self.store.idle_items(cur, CLOUD, cuts.forget, batch, after)
                if not found:
                    break
                after = found[-1]
                done = self._tombstone(cur, [(k, i) for k, i, _ in found], "auto-forget: idle in zone 4", now)
            forgotten += [i for _, i in done]
            if done and not dry:
                self._audit(FORGET, count=len(done), ids=[i for _, i in done], reason="auto-forget", auto=True)
        demoted: list[tuple[str, int, int]] = []
        for zone in _policy.demote_zones(cfg):
            after = None
            while progress.go():
                with self._tx(shared) as cur:
                    found = self.store.idle_items(cur, zone, cuts.decay, batch, after)
                    if not found:
                        break
                    after = found[-1]
                    self.store.demote(cur, zone, [(k, i) for k, i, _ in found], now)
                demoted += [(i, zone, zone + 1) for _, i, _ in found]
        with self._tx(shared) as cur:
            zones = self.store.zone_counts(cur)
        failures = () if dry else self._finish_pending_trash(progress)
        report = _policy.DecayReport(
            started_at=now, dry_run=dry, scanned=sum(zones.values()) + len(forgotten), adopted=adopted,
            demoted=tuple(demoted), forgotten=tuple(forgotten), protected=protected, zones=zones,
            trash_failures=failures, seconds=time.perf_counter() - t0, aborted=progress.aborted)
        if not dry:
            if demoted:
                self._audit(ZONE_CHANGE, count=len(demoted), changes=report.zone_changes())
            self._audit(DECAY_RUN, **report.summary())
        return report

    def _adopt(self, now: float, shared: Any | None, progress: _Progress) -> int:
        """State rows for committed items that have none (and refreshed ones for edited notes)."""
        cfg, batch, adopted = self.config, self.config.batch_size, 0
        after: str | None = ""
        while after is not None and progress.go():
            with self._tx(shared) as cur:
                n, after = self.store.adopt_events(cur, after, batch, cfg.initial_zone(KIND_EVENT), now)
            adopted += n
        after = ""
        while after is not None and progress.go():
            with self._tx(shared) as cur:
                changes, after = self.store.note_changes(cur, after, batch)
                adopted += sum(1 for c in changes if not c.has_state)
                self.store.upsert_note_states(cur, [_policy.note_state(c, cfg) for c in changes], now)
        # Notes removed in the vault leave state rows behind; events go only through forget, which
        # drops theirs (an orphan is harmless anyway: a forget candidate without a source row is
        # dropped then), so only the small notes side is swept on every run.
        while progress.go():
            with self._tx(shared) as cur:
                if self.store.drop_missing_states(cur, KIND_NOTE, batch) < batch:
                    break
        return adopted

    def _tombstone(self, cur: Any, items: Sequence[tuple[str, str]], reason: str,
                   now: float) -> list[tuple[str, str]]:
        """Tombstone the forgettable ones of ``items`` (zone-4 candidates); notes are ``pending``
        until their file moves. Rows whose source is gone, or that are protected, leave the scan."""
        done: list[tuple[str, str]] = []
        for kind in KINDS:
            ids = [i for k, i in items if k == kind]
            if not ids:
                continue
            rows = self.store.source_rows(cur, kind, ids)
            self.store.drop_states(cur, kind, [i for i in ids if i not in rows])  # the source is gone
            if kind == KIND_NOTE:
                keep = {i: r for i, r in rows.items() if not _policy.note_protected(r.get("path"),
                                                                                    r.get("metadata_json"))}
                self.store.pin_states(cur, kind, [i for i in rows if i not in keep])  # keeps its row
                rows = keep
            done += [(kind, i) for i in self.store.tombstone(cur, kind, rows, {i: CLOUD for i in rows}, reason, now,
                                                             "pending" if kind == KIND_NOTE else None)]
        return done

    # -- files of forgotten notes -------------------------------------------------------------------
    def finish_pending_trash(self, keep_alive: Callable[[], bool] | None = None) -> tuple[tuple[str, str], ...]:
        """Move the files of forgotten notes still marked ``pending`` (into the trash folder of the
        day they were forgotten). Returns (id, why) of those that did not move. ``keep_alive`` is
        asked before each file; False stops there (the rest stay pending for the next run)."""
        return self._finish_pending_trash(_Progress(keep_alive or (lambda: True)))

    def _finish_pending_trash(self, progress: _Progress) -> tuple[tuple[str, str], ...]:
        failures: list[tuple[str, str]] = []
        while True:
            pending = self.store.pending_trash(self.config.batch_size)
            moved = False
            for tomb in pending:
                if not progress.go():
                    return tuple(failures)
                with self._steps.step():  # one step; and a forget or restore of this note is not halfway
                    current = next((t for t in self.store.tombstones_of(tomb.item_id) if t.kind == tomb.kind), None)
                    if current is None or current.file_state != "pending":
                        continue  # restored, or settled by a forget, since the page was read
                    why = self._trash_file(current, current.forgotten_at)
                if why is None:
                    moved = True
                else:
                    failures.append((tomb.item_id, why))
            if not moved or len(pending) < self.config.batch_size:
                return tuple(failures)

    def _trash_file(self, tomb: TombstoneRow, at: float) -> str | None:
        """Move one forgotten note's file; record the outcome on its tombstone. None if moved (or
        there was nothing left to move); else why, in plain words."""
        rel = str(tomb.payload.get("path") or "")
        if self.vault_root is None:
            return "no vault folder is configured, so the file was not moved"
        try:
            moved = move_to_trash(self.vault_root, rel, at, self.config.trash_dir, expect_digest=tomb.digest)
        except TrashMissing:
            self.store.set_trashed(tomb.kind, tomb.item_id, None, "missing")  # nothing left to move
            return None
        except TrashReplaced:
            # A note written at this path since the forget is somebody's new note: never moved. The
            # forgotten version stays restorable from its tombstone; the vault syncs the new one.
            self.store.set_trashed(tomb.kind, tomb.item_id, None, "replaced")
            log.warning("decay: %s holds a different file than forgotten note %s: left in place", rel, tomb.item_id)
            return (f"{rel} now holds a different file than the forgotten note (written there since): it was left "
                    "in place, not moved to the trash")
        except (TrashError, OSError) as exc:
            log.warning("decay: the file of forgotten note %s stays in place: %s", tomb.item_id, exc)
            return str(exc)
        self.store.set_trashed(tomb.kind, tomb.item_id, moved, "trashed")
        return None

    # -- forget / restore ----------------------------------------------------------------------------
    def forget(self, item_id: str, reason: str = "forgotten by request", *, now: float | None = None) -> ForgetResult:
        """Forget one event or note now: tombstone, row deleted, edges removed, queued for the recall
        index (which drops its vectors), a note's file moved to the trash. Pinned notes and md/
        configs are refused. Never raises for a bad id (the result says why); StoreError propagates."""
        if not isinstance(item_id, str) or not item_id.strip() or len(item_id) > MAX_ID:
            return ForgetResult(False, str(item_id)[:MAX_ID], None, "not an item id (a non-empty string of at most "
                                                                  f"{MAX_ID} characters)")
        at = float(self.clock() if now is None else now)
        reason = str(reason or "forgotten by request")[:1000]
        with self._steps.request():
            kind = self.store.item_kind(item_id)
            if kind is None:
                tombs = self.store.tombstones_of(item_id)
                if tombs:
                    failures = [why for tomb in tombs if tomb.file_state == "pending"
                                for why in [self._trash_file(tomb, at)] if why]
                    return ForgetResult(not failures, item_id, tombs[0].kind,
                                        "already forgotten" + (f"; {failures[0]}" if failures else ""),
                                        tombs[0].trash_path)
                return ForgetResult(False, item_id, None, "no such event or note")
            if kind == "config":
                return ForgetResult(False, item_id, kind, "configs (md/) are never forgotten")
            with self.store.transaction() as cur:
                rows = self.store.source_rows(cur, kind, [item_id])
                row = rows.get(item_id)
                if row is None:
                    return ForgetResult(False, item_id, kind, "no such event or note")
                if kind == KIND_NOTE and _policy.note_protected(row.get("path"), row.get("metadata_json")):
                    return ForgetResult(False, item_id, kind, "pinned notes are never forgotten")
                state = self.store.zone_of(cur, kind, item_id)
                self.store.tombstone(cur, kind, rows, {item_id: state}, reason, at,
                                     "pending" if kind == KIND_NOTE else None)
            trash_path, message = None, "forgotten"
            if kind == KIND_NOTE:
                tomb = next((t for t in self.store.tombstones_of(item_id) if t.kind == kind), None)
                why = None if tomb is None else self._trash_file(tomb, at)
                tomb = next((t for t in self.store.tombstones_of(item_id) if t.kind == kind), tomb)
                trash_path = tomb.trash_path if tomb is not None else None
                if why and tomb is not None and tomb.file_state == "replaced":
                    message = f"forgotten; {why}"
                elif why:
                    message = f"forgotten; the file stays in place for now ({why}); the next decay run retries"
        self._audit(FORGET, id=item_id, kind=kind, reason=reason, trash_path=trash_path)
        return ForgetResult(True, item_id, kind, message, trash_path)

    def restore(self, item_id: str, *, now: float | None = None) -> RestoreResult:
        """Bring a forgotten item back (file, row, a fresh state row in its kind's initial zone) and
        queue it for the recall index. Refused, with the reason, when it is not forgotten or a
        note's original place is taken. Never raises for a bad id; StoreError propagates."""
        if not isinstance(item_id, str) or not item_id.strip() or len(item_id) > MAX_ID:
            return RestoreResult(False, str(item_id)[:MAX_ID], None, "not an item id")
        at = float(self.clock() if now is None else now)
        with self._steps.request():
            tombs = self.store.tombstones_of(item_id)
            if not tombs:
                return RestoreResult(False, item_id, None, "not forgotten (no tombstone)")
            tomb = tombs[0]
            moved_back = False
            if tomb.kind == KIND_NOTE:
                # A new note a human wrote at the forgotten one's key holds its place: restoring
                # would either overwrite it or, keeping it, drop the tombstone's content for good.
                live = self.store.get_note("knowledge", item_id)
                if live is not None and str(live.get("digest") or "")[:64] != tomb.digest:
                    return RestoreResult(False, item_id, tomb.kind, f"a new note now lives at {live.get('path')}; "
                                         "move or rename it, then restore")
            if tomb.kind == KIND_NOTE and tomb.file_state == "trashed" and tomb.trash_path:
                if self.vault_root is None:
                    return RestoreResult(False, item_id, tomb.kind, "no vault folder is configured to restore into")
                try:
                    restore_from_trash(self.vault_root, tomb.trash_path, str(tomb.payload.get("path")),
                                       self.config.trash_dir)
                    moved_back = True
                except TrashMissing:
                    if not self._file_matches(tomb):  # a restore stopped after the move: the file is back
                        return RestoreResult(False, item_id, tomb.kind, f"{tomb.trash_path} is gone from the trash")
                except (TrashError, OSError) as exc:
                    return RestoreResult(False, item_id, tomb.kind, str(exc))
            try:
                with self.store.transaction() as cur:
                    ok = self.store.restore_row(cur, tomb, self.config.initial_zone(tomb.kind), at)
            except BaseException:
                if moved_back:
                    self._undo_restore(tomb)
                raise
            if not ok:
                if moved_back:
                    self._undo_restore(tomb)
                return RestoreResult(False, item_id, tomb.kind, "the tombstone cannot rebuild the item")
        self._audit(RESTORE, id=item_id, kind=tomb.kind, forgotten_at=tomb.forgotten_at)
        return RestoreResult(True, item_id, tomb.kind, "restored")

    def _file_matches(self, tomb: TombstoneRow) -> bool:
        if self.vault_root is None:
            return False
        return (self.vault_root / str(tomb.payload.get("path") or "\x00")).is_file()

    def _undo_restore(self, tomb: TombstoneRow) -> None:
        assert self.vault_root is not None
        with contextlib.suppress(Exception):
            src = self.vault_root / str(tomb.payload.get("path"))
            dst = self.vault_root / str(tomb.trash_path)
            os.link(src, dst)
            os.unlink(src)

    # -- health -----------------------------------------------------------------------------------
    def health(self, scheduler: DecayScheduler | None = None, *,
               now: float | None = None) -> tuple[dict[str, Any], tuple[str, ...]]:
        """The health section and its problems in plain words. Never raises.

        Cheap on purpose (called with every ``service.health()``): the lease row, which holds the
        last run's summary and its items per zone, and an indexed look for unmoved trash files.
        """
        cfg = self.config
        if not cfg.enabled:
            return {"enabled": False}, ()
        now = float(self.clock() if now is None else now)
        scheduler = scheduler or self.scheduler
        running = scheduler.running if scheduler is not None else None
        section: dict[str, Any] = {"enabled": True, "scheduler_running": running, "interval_s": cfg.interval_s}
        try:
            lease = self.store.lease(LEASE)
            pending = len(self.store.pending_trash(1000))
            replaced = self.store.replaced_count()
        except StoreError as exc:
            section["error"] = str(exc)
            return section, (f"decay state cannot be read from the database ({exc})",)
        last_run = lease.last_run_at if lease is not None else None
        last: dict[str, Any] = {}
        with contextlib.suppress(TypeError, ValueError):
            last = json.loads(lease.last_result) if lease is not None and lease.last_result else {}
        zones = last.get("zones") if isinstance(last.get("zones"), dict) else {}
        counts = {z: int(zones.get(name, 0) or 0) for z, name in enumerate(ZONE_NAMES)}
        usage = _policy.zone_usage(counts, cfg.capacity)
        section.update({
            "last_run_at": last_run,
            "next_run_at": (scheduler.next_run_wall() if scheduler is not None and scheduler.running else
                            (last_run + cfg.interval_s if last_run is not None else None)),
            "last_result": {k: v for k, v in last.items() if k != "zones"} or None,
            "lease_holder": lease.holder if lease is not None and lease.expires_at > now else None,
            "zones": {ZONE_NAMES[u.zone]: u.items for u in usage} if last else None,  # as of the last run
            "usage": {ZONE_NAMES[u.zone]: {"items": u.items, "capacity": u.capacity,
                                           "percent": None if u.fraction is None else round(100 * u.fraction, 1),
                                           "warning": u.warning} for u in usage if u.capacity},
            "pending_trash": pending,
            "replaced_files": replaced,
        })
        problems = _policy.health_problems(usage, enabled=cfg.enabled, scheduler_running=running,
                                           last_run_at=last_run, interval_s=cfg.interval_s, now=now,
                                           pending_trash=pending, last_aborted=last.get("aborted"),
                                           last_trash_failures=int(last.get("trash_failures") or 0))
        return section, problems


from ._scheduler import DecayScheduler  # noqa: E402  (the scheduler builds on Decay)

__all__ = ["Decay", "DecayScheduler", "ForgetResult", "RestoreResult"]
