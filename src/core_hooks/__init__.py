"""How a chat core plugs into ``memory``: total hooks, bounded auto-init, and a reference core."""

from ._autoinit import auto_init
from ._hooks import EVENT_ID_KEY, TURN_ID_KEY, AsyncMemoryHooks, MemoryHooks

__all__ = ["EVENT_ID_KEY", "TURN_ID_KEY", "AsyncMemoryHooks", "MemoryHooks", "auto_init"]
