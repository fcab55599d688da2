"""A small, readable reference chat core (asyncio) wired to memory through the hooks.

Pipeline per observation: gate → ``after_gate`` → (DELIVER + MESSAGE) ``on_deliver`` → agent →
``after_agent`` / ``on_agent_error`` → output sink. One worker task per session keeps each
conversation in order while sessions run in parallel. The agent is rule-based and answers from
memory: the system prompt, the user's profile and ``recall`` scoped to the message's session
(the shared notes plus that session's own earlier messages). Its memory reads go through the
hooks' bounded call too (``MemoryHooks.call``): an agent reading from a hung memory side would
otherwise hold its executor thread forever, and ``asyncio.run`` joins that executor at the end.

This is what a real core looks like from memory's side; the demo and the tests drive it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
from collections.abc import Callable
from typing import Any

from ._hooks import AsyncMemoryHooks


class ObsType(enum.Enum):
    MESSAGE = "message"
    SYSTEM = "system"
    REACTION = "reaction"


class Decision(enum.Enum):
    DELIVER = "deliver"
    DROP = "drop"


@dataclasses.dataclass
class Observation:
    session_key: str
    text: str
    type: ObsType = ObsType.MESSAGE
    user_id: str | None = None
    id: str | None = None
    metadata: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class GateResult:
    action: Decision
    scene: str
    score: float
    reasons: tuple[str, ...]


@dataclasses.dataclass
class AgentResult:
    text: str
    error: str | None = None
    sources: tuple[str, ...] = ()
    recalled: Recollection | None = None  # what memory's recall contributed (None: recall not asked)


class AgentFailure(RuntimeError):
    """The agent broke (the demo triggers it with "[fail]" in a message)."""


class Gate:
    """Drop empty and system observations, deliver messages, drop everything else."""

    def __init__(self, system_session: str = "system") -> None:
        self.system_session = system_session

    def decide(self, obs: Observation) -> GateResult:
        if obs.session_key == self.system_session or obs.type is ObsType.SYSTEM:
            return GateResult(Decision.DROP, "system", 0.0, ("system observation",))
        if not obs.text.strip():
            return GateResult(Decision.DROP, "empty", 0.0, ("empty text",))
        if obs.type is ObsType.MESSAGE:
            return GateResult(Decision.DELIVER, "chat", 1.0, ("message",))
        return GateResult(Decision.DROP, obs.type.value, 0.2, ("not a message",))


@dataclasses.dataclass(frozen=True)
class Recalled:
    """One recall hit as the agent uses it (read off ``memory.Hit`` by attribute, so any object
    with those attributes will do)."""

    kind: str
    id: str
    title: str | None
    text: str
    session_key: str | None
    keyword_rank: int | None
    similarity: float | None


@dataclasses.dataclass(frozen=True)
class Recollection:
    """What the agent takes from one recall: the best note and an earlier message of the same session."""

    note: Recalled | None = None
    earlier: Recalled | None = None

    @property
    def sources(self) -> tuple[str, ...]:
        out = () if self.note is None else (self.note.id,)
        return out + (() if self.earlier is None else (f"event:{self.earlier.id}",))


def _recalled(hit: Any) -> Recalled | None:
    """A hit as a ``Recalled``, or None for something that does not look like a hit."""
    try:
        why = getattr(hit, "why", None)
        rank = getattr(why, "keyword_rank", None)
        sim = getattr(why, "similarity", None)
        session = getattr(hit, "session_key", None)
        title = getattr(hit, "title", None)
        return Recalled(str(hit.kind), str(hit.id), None if title is None else str(title), str(hit.text or ""),
                        None if session is None else str(session), rank if isinstance(rank, int) else None,
                        float(sim) if isinstance(sim, (int, float)) else None)
    except Exception:  # noqa: BLE001 - a malformed hit is skipped, never the agent's failure
        return None


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def _without_heading(text: str, title: str | None) -> str:
    """A note's snippet starts with its ``# Title`` line when the match is near the top; the
    reply names the title already."""
    text = text.strip()
    if title and text.startswith("#"):
        head = text.lstrip("#").lstrip()
        if head.startswith(title):
            return head[len(title):].strip()
    return text


class RuleAgent:
    """Answers from memory: the system prompt, the user's profile and ``recall``.

    Each message asks ``recall`` once, scoped to the message's own session (``session_key``):
    the shared notes plus that session's earlier events, never another session's. The reply
    quotes the best relevant note and, if there is one, a relevant earlier message of the same
    session. ``[fail]`` in the text makes it raise; ``[error]`` makes it return an error result.
    ``read(what, fn)`` runs each memory read; the reference core passes the hooks' bounded call.
    """

    RECALL_K = 8  # enough to hold the best note and the best earlier message side by side
    # A hit is relevant when a query word matched it or its vector is this close: the hash
    # embedder gives unrelated short texts similarities of 0.1-0.25 by shared n-grams alone.
    MIN_SIMILARITY = 0.3
    SNIPPET_CHARS = 160

    def __init__(self, memory: Any, read: Callable[[str, Callable[[], Any]], Any] | None = None) -> None:
        self.memory = memory
        self.read = read

    def _safe(self, fn: Callable[[], Any], what: str = "read") -> Any:
        if self.memory is None:
            return None
        try:
            return self.read(what, fn) if self.read is not None else fn()
        except Exception:  # noqa: BLE001 - a missing profile is not the agent's failure
            return None

    def _relevant(self, r: Recalled) -> bool:
        return r.keyword_rank is not None or (r.similarity is not None and r.similarity >= self.MIN_SIMILARITY)

    def recollect(self, obs: Observation) -> Recollection:
        """Recall for ``obs``: the best relevant note and earlier message of its session."""
        memory, session = self.memory, obs.session_key
        hits = self._safe(lambda: memory.recall(obs.text, k=self.RECALL_K, session_key=session), "recall")
        if not isinstance(hits, (list, tuple)):
            return Recollection()  # recall raised, timed out or is missing: answer without it
        own_id = (obs.metadata or {}).get("memory_event_id")
        note: Recalled | None = None
        earlier: Recalled | None = None
        for r in filter(None, map(_recalled, hits)):
            if not self._relevant(r):
                continue
            if r.kind == "knowledge" and note is None:
                note = r
            elif r.kind == "event" and earlier is None:
                # Recall is already scoped to this session; checking again costs nothing and
                # keeps another user's words out of this reply whatever the memory side does.
                # The message being answered is itself a (pending) event: read-your-writes
                # finds it first, and it is not "earlier".
                if r.session_key == session and r.id != own_id and r.text.strip() != obs.text.strip():
                    earlier = r
        return Recollection(note, earlier)

    def answer(self, obs: Observation) -> AgentResult:
        if "[fail]" in obs.text:
            raise AgentFailure(f"agent crashed on purpose for {obs.session_key}")
        if "[error]" in obs.text:
            return AgentResult(text="Sorry, I could not answer that.", error="agent reported an error")
        if "who are you" in obs.text.lower():
            system = self._safe(lambda: self.memory.get_system_prompt(), "get_system_prompt") or ""
            intro = next((ln for ln in system.splitlines() if ln.strip() and not ln.startswith("#")), "")
            return AgentResult(text=intro or "I am the assistant.", sources=("md/system.md",) if intro else ())
        memory = self.memory
        profile = self._safe(lambda: memory.get_user_profile(obs.user_id), "get_user_profile") if obs.user_id else None
        found = self.recollect(obs)
        parts = []
        if isinstance(profile, str) and profile.strip():
            parts.append(f"(I remember: {profile.strip().splitlines()[-1][:80]})")
        if found.note is not None:
            body = _clip(_without_heading(found.note.text, found.note.title), self.SNIPPET_CHARS)
            parts.append(f"From '{found.note.title or found.note.id}': {body}")
        else:
            parts.append("I don't have a note about that yet.")
        if found.earlier is not None:
            parts.append(f'Earlier you said: "{_clip(found.earlier.text, self.SNIPPET_CHARS)}"')
        return AgentResult(text=" ".join(parts), sources=found.sources, recalled=found)


class ReferenceCore:
    """inputs → gate → agent → outputs, with memory hooks at each step."""

    def __init__(self, memory: Any, *, system_session: str = "system", hook_timeout: float = 1.0) -> None:
        self.memory = memory
        self.hooks = AsyncMemoryHooks(memory, system_session=system_session, timeout=hook_timeout)
        self.gate = Gate(system_session)
        self.agent = RuleAgent(memory, read=self.hooks.call)
        self.outputs: list[Observation] = []
        self.processed: list[tuple[Observation, GateResult, str | None]] = []  # obs, decision, turn id
        self.answers: list[tuple[Observation, AgentResult]] = []  # each answered input with the agent's result
        self._queues: dict[str, asyncio.Queue[Observation | None]] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._count = 0

    async def submit(self, obs: Observation) -> None:
        q = self._queues.get(obs.session_key)
        if q is None:
            q = self._queues[obs.session_key] = asyncio.Queue()
            self._workers.append(asyncio.create_task(self._worker(q), name=f"session-{obs.session_key}"))
        await q.put(obs)

    async def _worker(self, q: asyncio.Queue[Observation | None]) -> None:
        while True:
            obs = await q.get()
            if obs is None:
                return
            await self.handle(obs)

    async def handle(self, obs: Observation) -> None:
        decision = self.gate.decide(obs)
        await self.hooks.a_after_gate(obs, decision)
        turn_id = None
        if decision.action is Decision.DELIVER:
            turn_id = await self.hooks.a_on_deliver(obs, decision)
            loop = asyncio.get_running_loop()
            try:
                result = await loop.run_in_executor(None, self.agent.answer, obs)
            except Exception as exc:  # noqa: BLE001 - the agent's failure is recorded, not fatal
                await self.hooks.a_on_agent_error(turn_id, exc)
                self._emit(Observation(obs.session_key, "(the assistant had a problem; please try again)",
                                       id=self._next_id()), turn_id)
            else:
                self.answers.append((obs, result))
                reply = Observation(obs.session_key, result.text, id=self._next_id())
                await self.hooks.a_after_agent(turn_id, result=result, outputs=[reply])
                self._emit(reply, turn_id)
        self.processed.append((obs, decision, turn_id))

    def _emit(self, reply: Observation, turn_id: str | None) -> None:
        if turn_id and reply.metadata is None:
            reply.metadata = {"memory_turn_id": turn_id}
        self.outputs.append(reply)

    def _next_id(self) -> str:
        self._count += 1
        return f"out-{self._count}"

    async def drain(self) -> None:
        """Let every session finish what it was given."""
        for q in self._queues.values():
            await q.put(None)
        await asyncio.gather(*self._workers)
        self._queues.clear()
        self._workers.clear()

    async def shutdown(self) -> None:
        await self.drain()
        await self.hooks.a_shutdown()
