"""One process of the chaos run: ``python tools/chaos_actor.py '<json spec>'``.

Every process (and every child it forks or spawns) appends events, turns and finishes as fast
as it is allowed to and writes each acknowledged id to its own ack file
(``<acks>/<name>-<pid>.log``, ``O_APPEND``, one ``os.write`` per record) right after the call
returned: that id was acknowledged and must survive whatever happens next. Lines::

    # pid <pid> <name> <t>  announced before the service is built (top-level: once imported)
    # started <monotonic>   the service is built (appends follow)
    # exit <pid> <code>     a parent reaped a multiprocessing child
    # blind                 the queue's counters were not found: drops cannot be seen
    e <id> <poison>         event acknowledged     t <id> 0   turn     f <turn id> 0   finish
    E/T/F <id> <p> <why>    acknowledged but *not durable*: the service counted it dropped
                            (``disk_full``, ...) or could only hold it in memory (``memory``)

A process whose fate is ``exit`` appends ``n`` records and leaves normally (its exit-time
close runs; multiprocessing ``fork`` children close explicitly when told to, since their
interpreter ends with ``os._exit``); a process whose fate is ``kill`` appends until the harness
kills it. A watchdog ends the process if the harness is gone, so nothing outlives a run.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
from typing import Any

DROP_REASONS = ("disk_full", "journal_error", "closed", "unencodable")
_SERVICE: Any = None  # the parent's service, inherited by multiprocessing "fork" children


def watchdog(harness: int, die_at: float) -> None:
    """Leave at once if the harness is gone (we were re-parented elsewhere) or the run overran."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            ppid = os.getppid()
            if ppid not in (harness, parent) or time.time() > die_at:
                os._exit(3)
            time.sleep(0.25)

    threading.Thread(target=watch, name="chaos-watchdog", daemon=True).start()


class Ack:
    def __init__(self, ack_dir: str, name: str) -> None:
        path = os.path.join(ack_dir, f"{name}-{os.getpid()}.log")
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self.line(f"# pid {os.getpid()} {name} {time.monotonic()}")  # the clock is system-wide

    def line(self, text: str) -> None:
        os.write(self.fd, (text + "\n").encode())


class Durability:
    """Tells whether the append that just returned was journaled, or dropped / held in memory only.

    Reads the queue's own counters (drops by reason, records held in memory only) before and
    after each append; a process that cannot find them says so (``# blind``) instead of
    silently reporting every record as journaled.
    """

    def __init__(self, svc: Any, ack: Ack) -> None:
        self.svc, self.ack = svc, ack
        self.blind = False

    def snapshot(self) -> tuple[int, ...]:
        q = self.svc.queue
        if type(q).__name__ == "_Rebuild":
            return ()  # a forked child before its first call: its own queue starts from zero
        ledger = q.ledger if hasattr(q, "ledger") else q
        dropped = getattr(ledger, "dropped", None)
        memory = q.volatile if hasattr(q, "volatile") else getattr(q, "_volatile", None)
        if dropped is None or memory is None:
            if not self.blind:
                self.blind = True
                self.ack.line("# blind")
            return ()
        return (*(dropped.get(r, 0) for r in DROP_REASONS), len(memory))

    def why(self, before: tuple[int, ...]) -> str:
        after = self.snapshot()
        before = before or (0,) * len(after)
        if after == before:
            return ""
        for reason, b, a in zip((*DROP_REASONS, "memory"), before, after):
            if a > b:
                return reason
        return ""


def _ack(ack: Ack, kind: str, rid: str, poison: int, why: str) -> None:
    ack.line(f"{kind.upper()} {rid} {poison} {why}" if why else f"{kind} {rid} {poison}")


def append_loop(svc: Any, ack: Ack, rng: random.Random, n: int | None, spec: dict[str, Any]) -> None:
    """Append until ``n`` events were acknowledged (forever if None)."""
    dur = Durability(svc, ack)
    pace, share = spec["pace"], spec["poison"]
    i = 0
    while n is None or i < n:
        poison = rng.random() < share
        before = dur.snapshot()
        ev = svc.append_event({"i": i, "text": "poison" if poison else "fine", "pad": "x" * rng.randint(0, 400)},
                              f"s{i % 7}")
        _ack(ack, "e", ev.event_id, int(poison), dur.why(before))
        if i % 3 == 0:
            before = dur.snapshot()
            turn = svc.append_turn(f"s{i % 7}", ev.event_id)
            _ack(ack, "t", turn.turn_id, 0, dur.why(before))
            before = dur.snapshot()
            svc.finish_turn(turn.turn_id, status="ok")
            _ack(ack, "f", turn.turn_id, 0, dur.why(before))
        i += 1
        if pace and i % pace == 0:
            time.sleep(0.001)  # leave the machine's two cores some room for the writers


def _fate_count(plan: dict[str, Any]) -> int | None:
    return plan["n"] if plan["fate"] == "exit" else None


# -- children --------------------------------------------------------------------------------------------
def own_stderr(spec: dict[str, Any], name: str) -> None:
    """A child's own stderr file (fd 2, which the fault handler writes a SIGBUS report to)."""
    fd = os.open(os.path.join(spec["logs"], f"{name}.err"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)


def fork_child(svc: Any, spec: dict[str, Any], child: dict[str, Any]) -> None:
    """An ``os.fork`` child: keeps appending through the service it inherited. Never returns."""
    own_stderr(spec, child["name"])
    watchdog(spec["harness"], spec["die_at"])
    ack = Ack(spec["acks"], child["name"])
    ack.line(f"# started {time.monotonic()}")
    append_loop(svc, ack, random.Random(child["seed"]), _fate_count(child), spec)
    ack.line("# leaving")
    raise SystemExit(0)  # a normal interpreter exit: the inherited service's atexit close runs


def mp_fork_child(spec: dict[str, Any], child: dict[str, Any]) -> None:
    """A multiprocessing ``fork`` child: appends through the inherited service."""
    own_stderr(spec, child["name"])
    watchdog(spec["harness"], spec["die_at"])
    ack = Ack(spec["acks"], child["name"])
    ack.line(f"# started {time.monotonic()}")
    append_loop(_SERVICE, ack, random.Random(child["seed"]), _fate_count(child), spec)
    ack.line("# leaving")
    if child["close"]:
        _SERVICE.close()  # multiprocessing ends a fork child with os._exit: no atexit close


def mp_spawn_child(spec: dict[str, Any], child: dict[str, Any]) -> None:
    """A multiprocessing ``spawn`` child: builds its own service from the shared config."""
    own_stderr(spec, child["name"])
    watchdog(spec["harness"], spec["die_at"])
    ack = Ack(spec["acks"], child["name"])
    from memory import MemoryService

    svc = MemoryService.from_config(spec["cfg"])
    ack.line(f"# started {time.monotonic()}")
    append_loop(svc, ack, random.Random(child["seed"]), _fate_count(child), spec)
    ack.line("# leaving")
    if child["close"]:
        svc.close()


# -- top-level processes -----------------------------------------------------------------------------------
def main(spec: dict[str, Any]) -> None:
    global _SERVICE
    watchdog(spec["harness"], spec["die_at"])
    plan = spec["plan"]
    from memory import MemoryService

    ack = Ack(spec["acks"], plan["name"])  # announced once imported: the harness may kill it from here on
    svc = MemoryService.from_config(spec["cfg"])  # slot claim, adoption of dead slots; replay follows
    ack.line(f"# started {time.monotonic()}")
    rng = random.Random(plan["seed"])
    procs = []
    if plan["kind"] != "plain":
        append_loop(svc, ack, rng, plan["prefork"], spec)  # a parent with a live, used service
        if plan["kind"] == "fork":
            for child in plan["children"]:
                if os.fork() == 0:
                    fork_child(svc, spec, child)
        else:
            import multiprocessing

            _SERVICE = svc
            ctx = multiprocessing.get_context("fork" if plan["kind"] == "mp-fork" else "spawn")
            target = mp_fork_child if plan["kind"] == "mp-fork" else mp_spawn_child
            for child in plan["children"]:
                p = ctx.Process(target=target, args=(spec, child), name=child["name"])
                p.start()
                procs.append(p)
    append_loop(svc, ack, rng, _fate_count(plan), spec)
    for p in procs:
        p.join()  # an exiting multiprocessing parent waits for its children anyway: say how they ended
        ack.line(f"# exit {p.pid} {p.exitcode}")
    ack.line("# leaving")
    if plan["close"]:
        svc.close(timeout=1.0)  # an application that closes its service itself, briefly
    sys.exit(0)  # a normal exit: the service's atexit close runs (a no-op after close())


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
