"""What the chaos run does, decided up front from a seed: pure functions, frozen plans.

A run is a sequence of cycles. In each cycle several processes share one queue folder and one
database; each has a *fate*: ``kill`` (SIGKILL at a planned moment, possibly during start-up)
or ``exit`` (append ``n`` records, then leave normally so its exit-time close runs). Some are
*parents*: they build their service, append a few records, then start children with
``os.fork``, ``multiprocessing`` (``fork``) or ``multiprocessing`` (``spawn``), and keep
appending themselves. The database is up, flapping, or down for a whole stretch of cycles.

Everything random is drawn here, so a seed names a run; only the machine's timing varies.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

PLAIN, FORK, MP_FORK, MP_SPAWN = "plain", "fork", "mp-fork", "mp-spawn"
PARENT_KINDS = (FORK, MP_FORK, MP_SPAWN)
KILL, EXIT = "kill", "exit"
DB_FLAP, DB_DOWN = "flap", "down"


@dataclasses.dataclass(frozen=True)
class Options:
    """Shape of a run (the CLI flags of ``tools/chaos.py`` and ``tools/soak.py``)."""

    cycles: int = 20
    seed: int = 0
    procs: int = 3                 # top-level processes per cycle
    forks: bool = False            # let some of them be parents of forked / spawned children
    max_life: float = 0.5          # longest planned life after start-up (seconds)
    early_kill: float = 0.2        # share of kills during start-up (import, claim, adoption, replay)
    exit_share: float = 0.2        # share of processes that leave normally instead of being killed
    outage_every: int = 10         # on average one long outage per this many cycles (0: never)
    outage_cycles: tuple[int, int] = (3, 5)  # a long outage lasts this many whole cycles
    segment_mb: float = 0.05       # failure_queue.max_dump_file_size_mb
    disk_mb: float = 50_000        # failure_queue.max_disk_mb
    pace: int = 10                 # an actor sleeps 1 ms every ``pace`` appends (0: flat out)
    always_down: bool = False      # the database is down for every cycle (one long outage)
    poison: float = 0.003          # share of events the database rejects (they must be dead-lettered)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ChildPlan:
    name: str
    fate: str
    life: float        # kill this long after the child announced itself (fate kill)
    n: int             # records to append before leaving (fate exit)
    seed: int
    close: bool        # multiprocessing children: close the service explicitly before returning


@dataclasses.dataclass(frozen=True)
class ActorPlan:
    name: str
    kind: str
    fate: str
    early: float | None  # kill this long after spawn / after the announcement, before it may have started
    early_from: str      # "spawn" (during interpreter start and imports) or "announce" (building the service)
    life: float          # otherwise: kill this long after it started appending
    n: int
    seed: int
    prefork: int         # records a parent appends before starting its children
    close: bool = False  # fate exit: close the service itself (else only the atexit close runs)
    children: tuple[ChildPlan, ...] = ()


@dataclasses.dataclass(frozen=True)
class CyclePlan:
    cycle: int
    db: str                      # flap or down for the whole cycle
    actors: tuple[ActorPlan, ...]
    order: str = ""              # parents: "parent-first" (killed before its children) or "children-first"


def outage_cycles(opts: Options) -> frozenset[int]:
    """Cycles during which the database is down from start to end (long outages)."""
    if opts.always_down:
        return frozenset(range(opts.cycles))
    if opts.outage_every <= 0 or opts.cycles < 4:
        return frozenset()
    rng = random.Random(f"outage-{opts.seed}")
    down: set[int] = set()
    # The first outage starts early enough that even a short CI run has one, and ends well
    # before the last cycle so that the run also shows the backlog draining afterwards.
    cycle = min(rng.randint(2, max(2, opts.outage_every // 2)), max(1, opts.cycles - 4))
    while cycle < opts.cycles - 2:
        length = rng.randint(*opts.outage_cycles)
        down.update(range(cycle, min(cycle + length, opts.cycles - 2)))
        cycle += length + rng.randint(max(1, opts.outage_every // 2), max(2, opts.outage_every * 3 // 2))
    return frozenset(down)


def _child(rng: random.Random, name: str, kind: str, parent_life: float, order: str, opts: Options) -> ChildPlan:
    fate = EXIT if rng.random() < 0.35 else KILL
    if order == "parent-first":
        life = parent_life + rng.uniform(0.15, opts.max_life)  # outlives its parent
    else:
        life = rng.uniform(0.0, parent_life * 0.8)  # killed while the parent still appends
    if kind == MP_SPAWN and rng.random() < 0.3:
        life = rng.uniform(0.0, 0.3)  # a spawned child builds its own service: kill it doing that
    return ChildPlan(name, fate, round(life, 3), rng.randint(20, 2000), rng.randrange(1 << 30), rng.random() < 0.5)


def plan_cycle(opts: Options, cycle: int, down: frozenset[int]) -> CyclePlan:
    """The processes of one cycle, their kinds, fates and kill times."""
    rng = random.Random(f"cycle-{opts.seed}-{cycle}")
    parent_at = -1
    order = ""
    if opts.forks and rng.random() < 0.75:
        parent_at = rng.randrange(opts.procs)
        # Rotate the kinds so that every short run covers all three ways of starting children.
        order = "parent-first" if (cycle // 3) % 2 == 0 else "children-first"
    actors = []
    for k in range(opts.procs):
        name = f"c{cycle:04d}-a{k}"
        seed = rng.randrange(1 << 30)
        kind = PARENT_KINDS[cycle % 3] if k == parent_at else PLAIN
        fate = EXIT if rng.random() < opts.exit_share else KILL
        early, early_from = None, ""
        if kind == PLAIN and fate == KILL and rng.random() < opts.early_kill:
            # Building the service (slot claim, adoption, scan) takes tens of milliseconds, and the
            # replay starts right after: two thirds of the early kills aim there, the rest at imports.
            early_from = "announce" if rng.random() < 0.67 else "spawn"
            early = round(rng.uniform(0.0, 0.06 if early_from == "announce" else 0.5), 3)
        life = round(rng.uniform(0.05, opts.max_life), 3)
        children: tuple[ChildPlan, ...] = ()
        if kind != PLAIN:
            fate = KILL if order == "parent-first" else fate
            if order == "parent-first":
                life = round(rng.uniform(0.05, opts.max_life / 2), 3)
            else:
                life = round(rng.uniform(opts.max_life / 2, opts.max_life), 3)
            tag = {FORK: "f", MP_FORK: "m", MP_SPAWN: "s"}[kind]
            children = tuple(_child(rng, f"{name}-{tag}{i}", kind, life, order, opts)
                             for i in range(rng.randint(1, 3)))
        actors.append(ActorPlan(name, kind, fate, early, early_from, life, rng.randint(50, 1500), seed,
                                rng.randint(5, 200), rng.random() < 0.5, children))
    return CyclePlan(cycle, DB_DOWN if cycle in down else DB_FLAP, tuple(actors), order)


def plan_run(opts: Options) -> list[CyclePlan]:
    down = outage_cycles(opts)
    return [plan_cycle(opts, c, down) for c in range(opts.cycles)]


@dataclasses.dataclass(frozen=True)
class Stretch:
    up: bool
    seconds: float
    mode: str  # how the database is down: "lock" (SQLite), or a fault proxy mode


def flap_schedule(seed: int, mysql: bool, n: int = 10_000) -> list[Stretch]:
    """Alternating up / down stretches for the flapper between long outages (seconds long)."""
    rng = random.Random(f"flap-{seed}")
    modes = ("refuse", "blackhole", "reset") if mysql else ("lock",)
    out = []
    for i in range(n):
        if i % 2 == 0:
            out.append(Stretch(True, round(rng.uniform(0.2, 1.5), 3), "forward"))
        else:
            out.append(Stretch(False, round(rng.uniform(0.3, 3.0), 3), rng.choice(modes)))
    return out


def queue_config(dsn: str, root: str, opts: Options) -> dict[str, Any]:
    """The one config every process of the run shares (same queue folder, same database)."""
    return {
        "database": {"dsn": dsn, "connect_timeout": 1, "read_timeout": 3, "write_timeout": 3,
                     "sqlite_busy_timeout": 0.1},
        "vault": {"root_path": f"{root}/vault", "watch": False},
        "failure_queue": {"path": f"{root}/queue", "max_in_memory": 500, "spill_batch_size": 200,
                          "batch_size": 300, "max_dump_file_size_mb": opts.segment_mb, "max_retries": 2,
                          "max_disk_mb": opts.disk_mb, "retry_base_delay_s": 0.02, "retry_max_delay_s": 0.2,
                          "fsync": "never"},
        "logging": {"warn_interval_s": 60},
    }
