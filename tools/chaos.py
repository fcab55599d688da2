"""Multi-process chaos run: ``python tools/chaos.py --dsn DSN --workdir DIR [--cycles 20] [--forks]``.

Each cycle starts several processes on one config (one queue folder, one database). Some are
parents that build their service, append, then start children with ``os.fork``,
``multiprocessing`` (``fork``) or ``multiprocessing`` (``spawn``) that keep appending next to
the parent. The harness SIGKILLs them at planned moments (during start-up, slot claim,
adoption and replay; mid-append; a parent before its children or the other way round), lets
others leave normally, and flaps the database for seconds at a time, or holds it down for
several whole cycles. It is the *subreaper* of everything it starts, so it sees how every
process ended, forked grandchildren included, and tells "we killed it" from "it died on its own"
(SIGBUS, an exception, a deadlock that never let it exit). A thread samples the queue folder's
disk use every 100 ms.

At the end one fresh service drains everything and the checker holds the run to its promises:
every acknowledged record is in the database exactly once or dead-lettered with a reason,
nothing was dead-lettered that the database would have taken, no rejected row is in the
database, ``check()`` is clean, no segment is left, disk use stayed bounded. The JSON summary's
``failures`` lists every broken promise (empty = pass). Used by ``tests/test_chaos.py`` and
``tools/soak.py``. ``--trace`` saves every slot's state and segments after each cycle, to follow
a lost record back to the cycle that lost it.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import dataclasses
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chaos_check import MB, JournalUsage, du, leftovers, stderr_problems, tail, trace_slots, verify  # noqa: E402
from chaos_db import Flapper, ProxyFault, SqliteLock  # noqa: E402
from chaos_plan import (DB_DOWN, EXIT, KILL, PLAIN, CyclePlan, Options, flap_schedule, plan_run,  # noqa: E402
                        queue_config)

ACTOR = Path(__file__).resolve().parent / "chaos_actor.py"
STALL_S = 3.0        # a live process that acknowledged nothing for this long is stuck
START_TIMEOUT_S = 60.0
EXIT_TIMEOUT_S = 45.0  # an "exit" process that is still running after this long is hung


def become_subreaper() -> None:
    """Orphaned grandchildren are re-parented to us: we reap them, so we learn how they ended and
    their pid cannot be reused while we may still signal it."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


@dataclasses.dataclass
class Proc:
    """One process of a cycle, as the harness sees it."""

    name: str
    kind: str
    fate: str
    life: float
    early: float | None
    early_from: str
    top: bool
    err: Path
    pid: int = 0
    spawned: float = 0.0
    announced: float | None = None
    started: float | None = None
    ack: Path | None = None
    offset: int = 0
    acks: int = 0
    last_ack: float = 0.0
    leaving: bool = False
    killed: str = ""             # why we killed it: plan, sweep, hung, start-timeout
    idle_at_kill: float = 0.0
    killed_at: float = 0.0
    status: int | None = None    # exit code; negative: the signal that ended it
    status_lost: bool = False    # reaped by its parent without a word
    ended: float = 0.0


def judge(p: Proc) -> str | None:
    """Why a process's end breaks the run's promises, or None. Pure."""
    who = f"{p.name} (pid {p.pid}, {p.kind}, fate {p.fate})"
    if p.killed == "hung":
        return f"{who} hung: still running {EXIT_TIMEOUT_S:.0f} s after it was told to leave"
    if p.killed == "start-timeout":
        return f"{who} never finished starting in {START_TIMEOUT_S:.0f} s"
    if p.killed in ("plan", "sweep"):
        if p.status not in (-9, None):
            return f"{who} died on its own (status {p.status}) before we killed it"
        if p.killed == "plan" and p.idle_at_kill > STALL_S:
            return f"{who} stalled: no append returned for {p.idle_at_kill:.1f} s before its kill"
        return None
    if p.status_lost or p.status is None:
        return None
    if p.fate == EXIT and p.status == 0:
        return None
    return f"{who} died on its own (status {p.status}{', after its last append' if p.leaving else ''})"


class Harness:
    def __init__(self, opts: Options, cfg: dict[str, Any], workdir: Path) -> None:
        self.opts, self.cfg, self.workdir = opts, cfg, workdir
        self.queue_dir = Path(cfg["failure_queue"]["path"])
        self.procs: dict[int, Proc] = {}
        self.orphans: dict[int, int] = {}           # statuses of pids not (yet) announced
        self.via_parent: dict[int, int] = {}        # statuses a parent reported
        self.failures: list[str] = []
        self.counts: collections.Counter[str] = collections.Counter()
        self.live = 0
        self.slowest = ""
        self._lock = threading.Lock()
        self.build_ms: list[int] = []

    # -- processes -----------------------------------------------------------------------------
    def _spawn(self, spec: dict[str, Any], err: Path) -> int:
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")
        actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 2, str(err), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)]
        # A session of its own: whatever it forks stays in its process group, for the final sweep.
        return os.posix_spawn(sys.executable, [sys.executable, str(ACTOR), json.dumps(spec)], env,
                              file_actions=actions, setsid=True)

    def _reap(self) -> None:
        while True:
            with self._lock:  # a sniper thread must never signal a pid we reaped (it could be reused)
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    return
                if pid == 0:
                    return
                code = os.waitstatus_to_exitcode(status)
                p = self.procs.get(pid)
                if p is None:
                    self.orphans[pid] = code
                elif p.status is None:
                    p.status = code

    def _snipe(self, p: Proc, ack_dir: Path) -> None:
        """Kill ``p`` ``p.early`` seconds after it announced itself, to the millisecond: building the
        service (slot claim, adoption of dead slots, scan) takes only tens of milliseconds."""
        path = ack_dir / f"{p.name}-{p.pid}.log"
        deadline = time.monotonic() + START_TIMEOUT_S
        while not path.exists():
            if p.status is not None or time.monotonic() > deadline:
                return
            time.sleep(0.001)
        time.sleep(p.early or 0.0)
        with self._lock:
            if p.status is None:
                self._kill(p, "plan", time.monotonic())

    def _kill(self, p: Proc, why: str, now: float) -> None:
        if p.status is not None or p.killed:
            return
        p.killed = why
        p.killed_at = now
        if p.started is not None:
            p.idle_at_kill = now - max(p.started, p.last_ack)
        try:
            os.kill(p.pid, 9)  # still our child or grandchild, unreaped: the pid is still its own
        except ProcessLookupError:
            pass

    def _read_acks(self, p: Proc, now: float) -> None:
        if p.ack is None:
            return
        try:
            with open(p.ack, "rb") as fh:
                fh.seek(p.offset)
                data = fh.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1
        if end <= 0:
            return
        p.offset += end
        n = 0
        for line in data[:end].splitlines():
            if line[:1] in b"etfETF" and line[:1]:
                n += 1
            elif line.startswith(b"# started"):
                p.started = _stamp(line, now)
                if p.top and p.announced is not None:  # how long building the service took (claim, adoption)
                    self.build_ms.append(round((p.started - p.announced) * 1000))
            elif line.startswith(b"# pid "):
                p.announced = _stamp(line, p.announced or now)
            elif line == b"# leaving":
                p.leaving = True
            elif line == b"# blind":
                self.counts["blind"] += 1
            elif line.startswith(b"# exit "):
                parts = line.split()
                if len(parts) == 4 and parts[2].isdigit():
                    code = parts[3]
                    self.via_parent[int(parts[2])] = int(code) if code.lstrip(b"-").isdigit() else -1
        if n:
            p.acks += n
            p.last_ack = now

    def _discover(self, ack_dir: Path, children: dict[str, Any], now: float) -> None:
        for entry in os.scandir(ack_dir):
            name, _, pid_s = entry.name[:-4].rpartition("-")
            if not pid_s.isdigit():
                continue
            pid = int(pid_s)
            p = self.procs.get(pid)
            if p is not None and p.ack is None:
                p.ack, p.announced = Path(entry.path), now
            elif p is None:
                plan = children.get(name)
                if plan is None:
                    continue
                parent = self.procs[children[name]["_parent"]]
                p = Proc(name, parent.kind + "-child", plan["fate"], plan["life"], None, "", False,
                         parent.err.with_name(f"{name}.err"), pid=pid, spawned=now, announced=now,
                         ack=Path(entry.path))
                self.procs[pid] = p
                self.counts["children"] += 1
                if pid in self.orphans:
                    p.status = self.orphans.pop(pid)

    # -- one cycle -------------------------------------------------------------------------------
    def run_cycle(self, plan: CyclePlan) -> None:
        ack_dir = self.workdir / "acks" / f"c{plan.cycle:04d}"
        ack_dir.mkdir(parents=True, exist_ok=True)
        err_dir = self.workdir / "logs"
        err_dir.mkdir(exist_ok=True)
        self.procs, self.orphans, self.via_parent = {}, {}, {}
        children: dict[str, Any] = {}
        t0 = time.monotonic()
        for actor in plan.actors:
            spec = {"cfg": self.cfg, "acks": str(ack_dir), "logs": str(err_dir), "harness": os.getpid(),
                    "die_at": time.time() + 900, "poison": self.opts.poison,
                    "pace": self.opts.pace, "plan": dataclasses.asdict(actor)}
            err = err_dir / f"{actor.name}.err"
            pid = self._spawn(spec, err)
            self.procs[pid] = Proc(actor.name, actor.kind, actor.fate, actor.life, actor.early, actor.early_from,
                                   True, err, pid=pid, spawned=time.monotonic())
            for ch in spec["plan"]["children"]:
                children[ch["name"]] = dict(ch, _parent=pid)
            if actor.fate == KILL and actor.early is not None and actor.early_from == "announce":
                threading.Thread(target=self._snipe, args=(self.procs[pid], ack_dir), daemon=True).start()
            self.counts["processes"] += 1
            self.counts[f"kind_{actor.kind}"] += 1
        groups = list(self.procs)
        while True:
            now = time.monotonic()
            self._reap()
            self._discover(ack_dir, children, now)
            for pid, code in list(self.via_parent.items()):
                if pid in self.procs and self.procs[pid].status is None:
                    self.procs[pid].status = code
            for p in self.procs.values():
                if p.ended == 0.0 and (p.status is not None or p.status_lost):
                    p.ended = now
            alive = [p for p in self.procs.values() if p.status is None]
            self.live = len(alive)
            for p in alive:
                self._read_acks(p, now)
                self._decide(p, now)
            if all(self.procs[g].status is not None for g in groups):
                # Every parent is gone: whoever still runs is our child now, or was reaped by a
                # parent that said nothing (multiprocessing reaps on start()).
                for p in alive:
                    try:
                        pid, status = os.waitpid(p.pid, os.WNOHANG)
                    except ChildProcessError:
                        p.status_lost = True
                        continue
                    if pid:
                        p.status = os.waitstatus_to_exitcode(status)
                if all(p.status is not None or p.status_lost for p in self.procs.values()):
                    break
            if now - t0 > START_TIMEOUT_S + EXIT_TIMEOUT_S + 60:
                for p in alive:
                    self._kill(p, "hung", now)
            time.sleep(0.02)
        self._sweep(groups)
        self._account(plan)
        slow = max(self.procs.values(), key=lambda p: (p.ended or time.monotonic()) - p.spawned)
        self.slowest = f"{slow.name} {slow.fate} {(slow.ended or time.monotonic()) - slow.spawned:.1f}s"

    def _decide(self, p: Proc, now: float) -> None:
        if p.killed:
            return
        if p.fate == KILL:
            if p.top and p.early is not None:
                due: float | None = p.spawned + p.early if p.early_from == "spawn" else None  # else: sniped
            elif p.top:
                due = None if p.started is None else p.started + p.life
            else:
                due = (p.announced or now) + p.life
            if due is not None and now >= due:
                self._kill(p, "plan", now)
                return
        if p.top and p.started is None and now - p.spawned > START_TIMEOUT_S:
            self._kill(p, "start-timeout", now)
        elif p.fate == EXIT and now - p.spawned > EXIT_TIMEOUT_S:
            self._kill(p, "hung", now)

    def _sweep(self, groups: list[int]) -> None:
        """Kill whatever is left in the cycle's process groups, then reap everything."""
        for g in groups:
            try:
                os.killpg(g, 9)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.01)
                continue
            p = self.procs.get(pid)
            code = os.waitstatus_to_exitcode(status)
            if p is not None and p.status is None:
                p.status, p.status_lost = code, False
                p.killed = p.killed or "sweep"
            elif p is None:
                self.orphans[pid] = code
        self.live = 0

    def _account(self, plan: CyclePlan) -> None:
        for p in self.procs.values():
            if p.killed == "plan":
                if p.started is not None and p.started <= p.killed_at:
                    self.counts["killed"] += 1  # mid-append (or replaying what it adopted)
                else:
                    self.counts["killed_early"] += 1
                    self.counts["killed_importing" if p.announced is None else "killed_building"] += 1
            verdict = judge(p)
            if verdict:
                self.failures.append(f"cycle {plan.cycle}: {verdict}\n{tail(p.err)}")
            if p.status_lost:
                self.counts["status_unknown"] += 1
            if p.fate == EXIT and p.status == 0 and not p.killed:
                self.counts["exited"] += 1
            if p.kind.endswith("-child") and p.killed == "plan":
                parent = next((q for q in self.procs.values() if q.top and q.name == p.name.rsplit("-", 1)[0]), None)
                if parent is not None and parent.killed == "plan" and parent.status is not None:
                    self.counts["children_outlived_parent"] += 1
        self.counts["unannounced"] += len(self.orphans)


def _stamp(line: bytes, default: float) -> float:
    """The monotonic time an actor wrote on a marker line (CLOCK_MONOTONIC is system-wide)."""
    try:
        return float(line.split()[-1])
    except ValueError:
        return default


class DiskSampler:
    """Samples the journal's disk use every 100 ms against ``max_disk_mb`` x (live processes + 1)."""

    def __init__(self, harness: Harness, disk_mb: float, slack: int) -> None:
        self.h, self.disk_mb, self.slack = harness, disk_mb, slack
        self.peak = 0
        self.peak_live = 0
        self.samples = 0
        self.violations: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-du", daemon=True)

    def _run(self) -> None:
        prev_live = 0
        while not self._stop.wait(0.1):
            live = self.h.live
            used = sum(du(s) for s in self.h.queue_dir.glob("slot-*"))
            self.samples += 1
            # A process that just died still owns its data until someone adopts it: count it.
            limit = int(self.disk_mb * MB) * (max(live, prev_live) + 1) + self.slack
            if used > self.peak:
                self.peak, self.peak_live = used, max(live, prev_live)
            if used > limit and len(self.violations) < 20:
                self.violations.append({"mb": round(used / MB, 1), "limit_mb": round(limit / MB, 1), "live": live})
            prev_live = live

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def run_chaos(opts: Options, dsn: str, workdir: Path, proxy: Any = None,
              log: Callable[[str], None] = lambda s: None, progress_every: int = 0,
              trace: bool = False) -> dict[str, Any]:
    """Run ``opts.cycles`` cycles on ``dsn`` (through ``proxy``, a FaultProxy, for MariaDB)."""
    from crashloop import install_poison_rule

    become_subreaper()
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    install_poison_rule(dsn)
    mysql = proxy is not None
    svc_dsn = dsn
    if mysql:
        from sqlalchemy.engine import make_url

        svc_dsn = make_url(dsn).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        fault: Any = ProxyFault(proxy)
    else:
        fault = SqliteLock(Path(dsn.removeprefix("sqlite:///")))
    cfg = queue_config(svc_dsn, str(workdir), opts)
    plans = plan_run(opts)
    harness = Harness(opts, cfg, workdir)
    flapper = Flapper(fault, flap_schedule(opts.seed, mysql), "blackhole" if mysql else "lock")
    capacity = max(int(opts.segment_mb * MB), 16 + 1024)
    sampler = DiskSampler(harness, opts.disk_mb, slack=2 * capacity + 4 * MB)
    usage = JournalUsage()
    by_cycle: list[list[Any]] = []
    flapper.start()
    sampler.start()
    try:
        for plan in plans:
            flapper.hold_down = plan.db == DB_DOWN
            t = time.monotonic()
            harness.run_cycle(plan)
            took = round(time.monotonic() - t, 1)
            if trace:
                trace_slots(harness.queue_dir, workdir / "trace" / f"c{plan.cycle:04d}.json")
            u = usage.measure(harness.queue_dir)
            by_cycle.append([plan.cycle, plan.db, round(du(harness.queue_dir) / MB, 2), round(u["waste"] / MB, 2),
                             u["unsealed"], u["segments"], took])
            done = plan.cycle + 1
            log(f"cycle {done}/{opts.cycles}: {harness.counts['processes']} processes, "
                f"{len(harness.failures)} failures, queue {by_cycle[-1][2]} MB (unused preallocated "
                f"{by_cycle[-1][3]} MB), {took} s, slowest {harness.slowest}")
            if progress_every and done % progress_every == 0:
                print(f"[{time.monotonic() - started:.0f}s] {done}/{opts.cycles} cycles, "
                      f"{harness.counts['processes']} processes, {len(harness.failures)} failures", flush=True)
    finally:
        flapper.stop()
        sampler.stop()
    from memory import MemoryService

    log("draining with one fresh service")
    t = time.monotonic()
    svc = MemoryService.from_config(cfg)
    drained = False
    while not drained and time.monotonic() - t < 600:
        drained = svc.flush(5.0)
        q = svc.health()["queue"]
        log(f"  {time.monotonic() - t:.0f} s: committed {q['committed']}, dead {q['dead_lettered']}, "
            f"pending {q['pending']}, breaker {'open' if q['breaker_open'] else 'closed'} {q['last_error'] or ''}")
    log(f"drained={drained} in {time.monotonic() - t:.1f} s; checking")
    problems = svc.check()
    queue_stats = svc.health()["queue"]
    svc.close()
    log("verifying every acknowledged id")
    data = verify(dsn, workdir / "acks", harness.queue_dir)
    per_cycle_procs = max(len(p.actors) + sum(len(a.children) for a in p.actors) for p in plans) if plans else 0
    waste_bound = 2 * per_cycle_procs * capacity
    summary: dict[str, Any] = {
        "backend": "mariadb" if mysql else "sqlite", "options": opts.to_json(), "cycles": opts.cycles,
        **data,
        "drained": drained, "check_problems": problems, "quarantined": queue_stats["quarantined"],
        **leftovers(harness.queue_dir),
        "processes": dict(sorted(harness.counts.items())),
        "build_ms": _spread(harness.build_ms),
        "db": {"down_seconds": round(flapper.down_seconds, 1), "down_stretches": flapper.stretches,
               "outage_cycles": sorted(p.cycle for p in plans if p.db == DB_DOWN)},
        "disk": {"peak_mb": round(sampler.peak / MB, 1), "peak_live": sampler.peak_live, "samples": sampler.samples,
                 "violations": sampler.violations, "waste_max_mb": max((c[3] for c in by_cycle), default=0),
                 "waste_bound_mb": round(waste_bound / MB, 2), "by_cycle": by_cycle},
        "stderr": stderr_problems(sorted((workdir / "logs").glob("*.err"))),
        "process_failures": harness.failures,
        "seconds": round(time.monotonic() - started),
    }
    summary["failures"] = failures(summary)
    return summary


def _spread(values: list[int]) -> dict[str, int]:
    v = sorted(values)
    return {"n": len(v), "p50": v[len(v) // 2], "p90": v[len(v) * 9 // 10], "max": v[-1]} if v else {"n": 0}


def failures(s: dict[str, Any]) -> list[str]:
    """Every promise the run broke (empty: it passed). Pure."""
    out = []
    for key in ("lost", "finish_lost", "duplicated", "wrongly_dead", "dead_without_reason", "poison_in_db",
                "dead_letter_malformed"):
        if s[key]:
            out.append(f"{key}: {s[key]}")
    if s["id_clashes"]:
        out.append(f"the same id acknowledged by two processes: {s['id_clashes'][:3]}")
    if s["processes"].get("blind"):
        out.append(f"{s['processes']['blind']} processes could not see the queue's drop counters")
    if s["not_durable"]:
        out.append(f"acknowledged records the service did not journal: {s['not_durable']}")
    # A process can leave at most one record of each kind unacknowledged: the one whose append
    # returned just before it was killed.
    procs = s["processes"].get("processes", 0) + s["processes"].get("children", 0)
    for table, n in s["unacked_rows"].items():
        if not 0 <= n <= procs:
            out.append(f"{n} {table} rows in the database nobody acknowledged (at most {procs} allowed)")
    if not s["drained"]:
        out.append("the final service did not drain")
    if s["check_problems"]:
        out.append(f"check() after the drain: {s['check_problems']}")
    if s["segments_left"]:
        out.append(f"segments left after the drain: {s['segments_left'][:5]}")
    out += [f.split("\n", 1)[0] for f in s["process_failures"]]
    if s["disk"]["violations"]:
        out.append(f"queue disk use over max_disk_mb x (live + 1): {s['disk']['violations'][:3]}")
    if s["disk"]["waste_max_mb"] > s["disk"]["waste_bound_mb"]:
        out.append(f"preallocated space left by crashed starts grew to {s['disk']['waste_max_mb']} MB "
                   f"(bound {s['disk']['waste_bound_mb']} MB)")
    if s["stderr"]["counts"]:
        out.append(f"errors printed by the processes: {s['stderr']['counts']}")
    return out


def options_from(args: argparse.Namespace) -> Options:
    return Options(cycles=args.cycles, seed=args.seed, procs=args.procs, forks=args.forks, max_life=args.max_life,
                   outage_every=args.outage_every, segment_mb=args.segment_mb, disk_mb=args.disk_mb, pace=args.pace,
                   always_down=args.always_down, poison=args.poison)


def add_options(ap: argparse.ArgumentParser) -> None:
    d = Options()
    ap.add_argument("--cycles", type=int, default=d.cycles)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--procs", type=int, default=d.procs, help="top-level processes per cycle")
    ap.add_argument("--forks", action="store_true", help="some processes fork / spawn children")
    ap.add_argument("--max-life", type=float, default=d.max_life)
    ap.add_argument("--outage-every", type=int, default=d.outage_every, help="0: no long outages")
    ap.add_argument("--segment-mb", type=float, default=d.segment_mb, help="failure_queue.max_dump_file_size_mb")
    ap.add_argument("--disk-mb", type=float, default=d.disk_mb, help="failure_queue.max_disk_mb")
    ap.add_argument("--pace", type=int, default=d.pace, help="sleep 1 ms every N appends (0: flat out)")
    ap.add_argument("--always-down", action="store_true", help="the database is down for every cycle")
    ap.add_argument("--poison", type=float, default=d.poison, help="share of rows the database rejects")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsn", required=True, help="sqlite:///file or a MariaDB database URL")
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--trace", action="store_true", help="save every slot's state and segments after each cycle")
    add_options(ap)
    args = ap.parse_args()
    proxy = None
    if not args.dsn.startswith("sqlite"):
        from sqlalchemy.engine import make_url

        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.faultproxy import FaultProxy

        url = make_url(args.dsn)
        proxy = FaultProxy(url.host or "127.0.0.1", url.port or 3306)
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    try:
        summary = run_chaos(options_from(args), args.dsn, args.workdir, proxy, log, trace=args.trace)
    finally:
        if proxy is not None:
            proxy.close()
    print(json.dumps(summary, indent=2))
    sys.exit(1 if summary["failures"] else 0)


if __name__ == "__main__":
    main()
