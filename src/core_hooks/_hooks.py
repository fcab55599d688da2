"""The hooks a chat core calls at the four points of its pipeline (seed 003 §2).

::

    inputs ─► gate ─► after_gate()  ── Event, id written to obs.metadata["memory_event_id"]
                        │ DELIVER + MESSAGE
                        ▼
                      on_deliver()  ── Turn (only with an event id)
                        ▼
                      agent ─► after_agent() / on_agent_error() ── finish ok / error, outputs tagged
    shutdown ─► shutdown()  ── memory.close(): buffers flushed

Every hook is total. Whatever the memory side does — raises, hangs, is None — the hook logs a
rate-limited warning and returns, and the core's flow is unchanged. Calls to the memory side
run on a small bounded pool of daemon threads (:mod:`core_hooks._pool`) and are abandoned
after ``timeout`` seconds, so even a hung memory object costs the core a bounded wait;
:class:`AsyncMemoryHooks` awaits the same work without ever blocking the event loop.

With the memory side hung, the cost stays bounded in every dimension: at most ``workers``
threads are held, at most ``queue_limit`` calls wait, and once every worker is stuck past the
timeout further calls are refused at once (counted in :meth:`MemoryHooks.stats`, warned about)
instead of each waiting out its own timeout. A call abandoned before it started never runs
late. The threads are daemons, so a call that never returns does not hold the interpreter at
exit.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ._normalize import field, gate_summary, label, metadata_of
from ._pool import BoundedPool, Dropped, run_detached, valid_timeout

log = logging.getLogger("core_hooks")
T = TypeVar("T")

EVENT_ID_KEY = "memory_event_id"
TURN_ID_KEY = "memory_turn_id"


class _Warn:
    """One WARNING per key per interval, with a count of what was suppressed."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.last: dict[str, float] = {}
        self.suppressed: dict[str, int] = {}
        self.lock = threading.Lock()

    def __call__(self, key: str, msg: str, *args: Any) -> None:
        now = time.monotonic()
        with self.lock:
            if now - self.last.get(key, -1e18) < self.interval:
                self.suppressed[key] = self.suppressed.get(key, 0) + 1
                return
            self.last[key] = now
            extra = self.suppressed.pop(key, 0)
        log.warning(msg + (f" ({extra} similar suppressed)" if extra else ""), *args)


class MemoryHooks:
    """Hooks for a synchronous core. ``memory`` may be None (memory off): every hook is a no-op."""

    def __init__(self, memory: Any, *, system_session: str = "system", timeout: float = 1.0,
                 warn_interval: float = 30.0, workers: int = 4, queue_limit: int = 32) -> None:
        if valid_timeout(timeout) is None:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.memory = memory
        self.system_session = system_session
        self.timeout = timeout
        self.warn = _Warn(warn_interval)
        self._pool = BoundedPool(workers=workers, queue_limit=queue_limit, stuck_after=timeout, name="memory-hook")
        self._lock = threading.Lock()
        self.timed_out = 0  # calls the core stopped waiting for (they may still finish, or never start)

    # -- the bounded call -----------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], T]) -> T | None:
        fut = self._pool.submit(fn)
        try:
            return fut.result(timeout=self.timeout)
        except TimeoutError as exc:
            if fut.done():  # the memory call itself raised a TimeoutError: a failure, not our wait
                self.warn(what, "memory %s failed (%s: %s); the core goes on without it", what,
                          type(exc).__name__, exc)
            else:
                fut.cancel()  # not started yet: it never runs (counted as abandoned)
                self._timed_out(what)
        except Dropped as exc:
            self._dropped(what, exc)
        except Exception as exc:  # noqa: BLE001 - total: nothing from the memory side reaches the core
            self.warn(what, "memory %s failed (%s: %s); the core goes on without it", what, type(exc).__name__, exc)
        return None

    def call(self, what: str, fn: Callable[[], T]) -> T | None:
        """Run ``fn`` (a memory call of the core's own, e.g. a vault read) bounded like a hook: None on trouble."""
        return self._call(what, fn)

    def _timed_out(self, what: str) -> None:
        with self._lock:
            self.timed_out += 1
        self.warn(what, "memory %s did not answer within %.1fs; the core goes on without it", what, self.timeout)

    def _dropped(self, what: str, exc: Dropped) -> None:
        why = {"stuck": "every memory worker is stuck on an earlier call",
               "queue_full": "too many memory calls are already waiting",
               "closed": "the hooks were shut down"}.get(exc.reason, exc.reason)
        dropped = sum(self._pool.stats()["dropped"].values())
        self.warn(f"dropped:{exc.reason}", "memory %s dropped: %s (%d dropped so far); the core goes on without it",
                  what, why, dropped)

    def stats(self) -> dict[str, Any]:
        """The worker pool's counters plus ``timed_out``. Every call is accounted for:
        ``submitted = completed + failed + abandoned + sum(dropped) + queued + running``."""
        out = self._pool.stats()
        with self._lock:
            out["timed_out"] = self.timed_out
        return out

    # -- decisions (pure, shared with the async variant) ------------------------------------------------------
    def session_of(self, obs: Any, session_key: Any) -> str:
        key = session_key if session_key is not None else field(obs, "session_key", "session", "session_id",
                                                                    "chat_id", default="")
        return str(key) if key is not None else ""

    def _event_call(self, obs: Any, decision: Any, session_key: Any) -> Callable[[], Any] | None:
        memory = self.memory
        session = self.session_of(obs, session_key)
        if memory is None or session == self.system_session:
            return None
        meta = metadata_of(obs, create=False)
        gate = gate_summary(decision)
        return lambda: memory.append_event(obs, session, gate_result=gate,
                                           meta=dict(meta) if meta is not None else None)

    def _write_back(self, obs: Any, record: Any) -> str | None:
        event_id = field(record, "event_id", default=None)
        if not event_id:
            return None
        meta = metadata_of(obs, create=True)
        if meta is not None:
            meta[EVENT_ID_KEY] = event_id
        return str(event_id)

    def _turn_call(self, obs: Any, decision: Any, session_key: Any) -> Callable[[], Any] | None:
        if self.memory is None:
            return None
        if label(decision) != "deliver":
            return None
        if label(field(obs, "type", "kind", "obs_type", default="")) != "message":
            return None
        meta = metadata_of(obs, create=False)
        event_id = meta.get(EVENT_ID_KEY) if meta is not None else None
        if not event_id:
            self.warn("no-event-id", "no turn started: observation has no %s (its event was not recorded)",
                      EVENT_ID_KEY)
            return None
        memory, session = self.memory, self.session_of(obs, session_key)
        plan = field(decision, "plan", default=None)
        return lambda: memory.append_turn(session, event_id, plan=plan)

    def _finish_call(self, turn_id: Any, result: Any, error: Any, outputs: Iterable[Any]) -> Callable[[], Any] | None:
        if self.memory is None or not turn_id:
            return None
        outs = list(outputs or ())
        for out in outs:
            meta = metadata_of(out, create=True)
            if meta is not None:
                meta[TURN_ID_KEY] = turn_id
        if error is None and result is not None:
            error = field(result, "error", default=None)
        status = "error" if error else "ok"
        out_id = None
        if outs:
            out_id = field(outs[-1], "id", "obs_id", "message_id", default=None)
        memory = self.memory
        text = None if error is None else (error if isinstance(error, str) else f"{type(error).__name__}: {error}")
        return lambda: memory.finish_turn(turn_id, final_output_obs_id=out_id, status=status, error=text)

    # -- the hooks ---------------------------------------------------------------------------------------------
    def after_gate(self, obs: Any, decision: Any, session_key: Any = None) -> str | None:
        """Record the observation as an Event; returns its id (also written into obs.metadata)."""
        try:
            call = self._event_call(obs, decision, session_key)
            record = self._call("append_event", call) if call else None
            return self._write_back(obs, record) if record is not None else None
        except Exception as exc:  # noqa: BLE001
            self.warn("after_gate", "after_gate hook failed: %s", exc)
            return None

    def on_deliver(self, obs: Any, decision: Any, session_key: Any = None) -> str | None:
        """Start a Turn for a delivered message that has an event id; returns the turn id."""
        try:
            call = self._turn_call(obs, decision, session_key)
            record = self._call("append_turn", call) if call else None
            turn_id = field(record, "turn_id", default=None) if record is not None else None
            return str(turn_id) if turn_id else None
        except Exception as exc:  # noqa: BLE001
            self.warn("on_deliver", "on_deliver hook failed: %s", exc)
            return None

    def after_agent(self, turn_id: Any, result: Any = None, error: Any = None, outputs: Iterable[Any] = ()) -> None:
        """Finish the Turn: ``ok``, or ``error`` if the agent reported one; tag outputs with the turn id."""
        try:
            call = self._finish_call(turn_id, result, error, outputs)
            if call:
                self._call("finish_turn", call)
        except Exception as exc:  # noqa: BLE001
            self.warn("after_agent", "after_agent hook failed: %s", exc)

    def on_agent_error(self, turn_id: Any, exc: BaseException) -> None:
        """The agent raised: finish the Turn with ``error`` and the exception text."""
        self.after_agent(turn_id, error=exc)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Let queued calls finish, then close the memory service (flushing its buffers).

        Bounded: at most ``timeout`` for queued calls (none if every worker is stuck) and
        ``timeout + 1`` for ``close``, which runs on its own daemon thread so a stuck pool cannot
        keep it from running and a hung ``close`` cannot hold the interpreter at exit.
        """
        memory = self.memory
        try:
            self._pool.wait_idle(timeout)
            if memory is not None:
                run_detached(lambda: memory.close(timeout=timeout), "memory-hook-close").result(timeout=timeout + 1.0)
        except Exception as exc:  # noqa: BLE001
            self.warn("shutdown", "memory close failed or timed out: %s: %s", type(exc).__name__, exc)
        finally:
            self._pool.shutdown()


class AsyncMemoryHooks(MemoryHooks):
    """The same hooks for an asyncio core: memory work runs off the event loop, bounded in time."""

    async def _acall(self, what: str, fn: Callable[[], T] | None) -> T | None:
        if fn is None:
            return None
        loop = asyncio.get_running_loop()
        fut = self._pool.submit(fn)
        try:
            # On timeout wait_for cancels the wrapper, which cancels ``fut`` if it has not started.
            return await asyncio.wait_for(asyncio.wrap_future(fut, loop=loop), self.timeout)
        except asyncio.TimeoutError:
            self._timed_out(what)
        except Dropped as exc:
            self._dropped(what, exc)
        except Exception as exc:  # noqa: BLE001
            self.warn(what, "memory %s failed (%s: %s); the core goes on without it", what, type(exc).__name__, exc)
        return None

    async def a_after_gate(self, obs: Any, decision: Any, session_key: Any = None) -> str | None:
        try:
            record = await self._acall("append_event", self._event_call(obs, decision, session_key))
            return self._write_back(obs, record) if record is not None else None
        except Exception as exc:  # noqa: BLE001
            self.warn("after_gate", "after_gate hook failed: %s", exc)
            return None

    async def a_on_deliver(self, obs: Any, decision: Any, session_key: Any = None) -> str | None:
        try:
            record = await self._acall("append_turn", self._turn_call(obs, decision, session_key))
            turn_id = field(record, "turn_id", default=None) if record is not None else None
            return str(turn_id) if turn_id else None
        except Exception as exc:  # noqa: BLE001
            self.warn("on_deliver", "on_deliver hook failed: %s", exc)
            return None

    async def a_after_agent(self, turn_id: Any, result: Any = None, error: Any = None,
                            outputs: Iterable[Any] = ()) -> None:
        try:
            await self._acall("finish_turn", self._finish_call(turn_id, result, error, outputs))
        except Exception as exc:  # noqa: BLE001
            self.warn("after_agent", "after_agent hook failed: %s", exc)

    async def a_on_agent_error(self, turn_id: Any, exc: BaseException) -> None:
        await self.a_after_agent(turn_id, error=exc)

    async def a_shutdown(self, timeout: float = 10.0) -> None:
        # Not the loop's default executor: asyncio.run() joins that one at the end, hung or not.
        fut = run_detached(lambda: self.shutdown(timeout), "memory-hook-shutdown")
        try:
            await asyncio.wrap_future(fut)
        except Exception as exc:  # noqa: BLE001
            self.warn("shutdown", "memory shutdown failed: %s: %s", type(exc).__name__, exc)
