"""Bounded auto-init: a core asks for memory by config path and always gets an answer in time."""

from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
from typing import Any

log = logging.getLogger("core_hooks")
_reported: set[str] = set()
_reported_lock = threading.Lock()


def auto_init(enable_memory: bool = True, memory_config_path: str | os.PathLike[str] = "config/memory.yaml",
              timeout: float = 5.0) -> Any:
    """Build the memory service from ``memory_config_path`` within ``timeout`` seconds.

    * ``enable_memory=False`` → None (memory off, by the core's choice).
    * ``MEMORY_ENABLED=0`` → the disabled no-op service (ids, no I/O; health says disabled).
    * Database unreachable → a working, *degraded* service: construction never waits on the
      database, records wait in the local queue and are written when it returns.
    * Invalid config → None, with the config error logged once, clearly.
    """
    if not enable_memory:
        return None
    from memory import ConfigError, MemoryService

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="memory-init")
    try:
        return pool.submit(MemoryService.from_config, memory_config_path).result(timeout=timeout)
    except ConfigError as exc:
        key = str(exc)
        with _reported_lock:
            first = key not in _reported
            _reported.add(key)
        if first:
            log.error("memory disabled: invalid configuration: %s", exc)
        return None
    except concurrent.futures.TimeoutError:
        log.error("memory disabled: building the service took longer than %.1fs", timeout)
        return None
    except Exception as exc:  # noqa: BLE001 - never let memory stop the core from starting
        log.error("memory disabled: cannot start the memory service: %s: %s", type(exc).__name__, exc)
        return None
    finally:
        pool.shutdown(wait=False)
