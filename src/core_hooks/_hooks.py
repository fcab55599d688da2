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
run on a small worker pool and are abandoned after ``timeout`` seconds, so even a hung memory
object costs the core a bounded wait; :class:`AsyncMemoryHooks` awaits the same work without
ever blocking the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ._normalize import field, gate_summary, label, metadata_of

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
                 warn_interval: float = 30.0, workers: int = 4) -> None:
        self.memory = memory
        self.system_session = system_session
        self.timeout = timeout
        self.warn = _Warn(warn_interval)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="memory-hook")

    # -- the bounded call -----------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], T]) -> T | None:
        try:
            return self._pool.submit(fn).result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            self.warn(what, "memory %s did not answer within %.1fs; the core goes on without it", what, self.timeout)
        except Exception as exc:  # noqa: BLE001 - total: nothing from the memory side reaches the core
            self.warn(what, "memory %s failed (%s: %s); the core goes on without it", what, type(exc).__name__, exc)
        return None

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
        """Close the memory service (flushing its buffers), bounded by ``timeout``."""
        memory = self.memory
        if memory is not None:
            try:
                fut = self._pool.submit(lambda: memory.close(timeout=timeout))
                fut.result(timeout=timeout + 1.0)
            except Exception as exc:  # noqa: BLE001
                self.warn("shutdown", "memory close failed or timed out: %s", exc)
        self._pool.shutdown(wait=False, cancel_futures=True)


class AsyncMemoryHooks(MemoryHooks):
    """The same hooks for an asyncio core: memory work runs off the event loop, bounded in time."""

    async def _acall(self, what: str, fn: Callable[[], T] | None) -> T | None:
        if fn is None:
            return None
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(asyncio.wrap_future(self._pool.submit(fn), loop=loop), self.timeout)
        except asyncio.TimeoutError:
            self.warn(what, "memory %s did not answer within %.1fs; the core goes on without it", what, self.timeout)
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
        await asyncio.get_running_loop().run_in_executor(None, self.shutdown, timeout)
