"""memory: a fail-open persistence sidecar for chat and agent pipelines.

Storage trouble never reaches the caller: appends are journaled locally and acknowledged at
once, a background writer drains them into SQLite or MySQL, and nothing is lost on outages or
crashes. See the README for the full contract.
"""

from ._config import (Config, DatabaseConfig, FailureQueueConfig, GraphBoostConfig, GraphConfig, HealthConfig,
                      LoggingConfig, RecallConfig, VaultConfig, load_config, mask_dsn)
from ._disabled import DisabledMemoryService
from ._errors import (ConfigError, InvalidKeyError, MemoryServiceError, StoreError, StoreRejected,
                      StoreUnavailable)
from ._ids import IdGenerator
from ._protocol import GraphAPI, MemoryAPI
from ._records import Edge, EventRecord, TurnRecord
from ._service import MemoryService
from .decay import DecayConfig, DecayReport, ForgetResult, RestoreResult
from .index import Hit, Why
from .vault import Note, SyncReport

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "DecayConfig",
    "DecayReport",
    "DisabledMemoryService",
    "Edge",
    "EventRecord",
    "FailureQueueConfig",
    "ForgetResult",
    "GraphAPI",
    "GraphBoostConfig",
    "GraphConfig",
    "HealthConfig",
    "Hit",
    "IdGenerator",
    "InvalidKeyError",
    "LoggingConfig",
    "MemoryAPI",
    "MemoryService",
    "MemoryServiceError",
    "RecallConfig",
    "RestoreResult",
    "Note",
    "StoreError",
    "StoreRejected",
    "StoreUnavailable",
    "SyncReport",
    "TurnRecord",
    "VaultConfig",
    "Why",
    "load_config",
    "mask_dsn",
]
