"""The ``decay:`` section: defaults, accepted spellings, and one ConfigError per bad value that
names the file, the key, what was expected and what was found."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from memory import ConfigError, load_config
from memory.decay import DecayConfig, read_decay_config


def test_defaults() -> None:
    cfg = read_decay_config(None)
    assert cfg == DecayConfig(enabled=False)  # the section is off unless it says enabled: true
    # Built by hand it is off too: decay forgets data, so turning it on is always said out loud.
    assert DecayConfig() == cfg and not DecayConfig().enabled
    assert (cfg.enabled, cfg.interval_s, cfg.decay_days, cfg.auto_forget_days, cfg.min_zone_for_decay) == \
        (False, 3600.0, 30.0, 180.0, 2)
    assert dict(cfg.initial_zones) == {"knowledge": 1, "event": 3} and dict(cfg.capacity) == {}
    assert (cfg.batch_size, cfg.trash_dir, cfg.lease_ttl_s) == (1000, ".trash", 600.0)


def test_spellings_from_a_file(tmp_path: Path) -> None:
    f = tmp_path / "m.yaml"
    f.write_text("database: {dsn: 'sqlite:///x.db'}\ndecay:\n  enabled: 'no'\n  interval: 30m\n  decay_days: 7.5\n"
                 "  min_zone_for_decay: inner\n  initial_zone: {note: core, events: 4}\n"
                 "  capacity: {core: 200, '3': '5000'}\n  lease_ttl: 2m\n", encoding="utf-8")
    cfg = read_decay_config(load_config(f).decay, source=str(f))
    assert (cfg.enabled, cfg.interval_s, cfg.decay_days, cfg.min_zone_for_decay, cfg.lease_ttl_s) == \
        (False, 1800.0, 7.5, 1, 120.0)
    assert dict(cfg.initial_zones) == {"knowledge": 0, "event": 4} and dict(cfg.capacity) == {0: 200, 3: 5000}


@pytest.mark.parametrize(("section", "key", "found"), [
    ({"enabled": "maybe"}, "decay.enabled", "'maybe'"),
    ({"interval": "soon"}, "decay.interval", "'soon'"),
    ({"interval": -5}, "decay.interval", "-5"),
    ({"decay_days": 0}, "decay.decay_days", "0"),
    ({"auto_forget_days": "x"}, "decay.auto_forget_days", "'x'"),
    ({"min_zone_for_decay": 7}, "decay.min_zone_for_decay", "7"),
    ({"min_zone_for_decay": True}, "decay.min_zone_for_decay", "True"),
    ({"initial_zone": {"planet": 1}}, "decay.initial_zone.planet", "1"),
    ({"initial_zone": {"note": 9}}, "decay.initial_zone.note", "9"),
    ({"initial_zone": [1, 2]}, "decay.initial_zone", "[1, 2]"),
    ({"capacity": {"core": 0}}, "decay.capacity.core", "0"),
    ({"capacity": {"sun": 10}}, "decay.capacity.sun", "10"),
    ({"batch_size": 0}, "decay.batch_size", "0"),
    ({"trash_dir": "../elsewhere"}, "decay.trash_dir", "'../elsewhere'"),
    ({"trash_dir": "trash"}, "decay.trash_dir", "'trash'"),
    ({"lease_ttl": 0.5}, "decay.lease_ttl", "0.5"),
])
def test_bad_values_name_file_key_expected_and_found(section: dict[str, Any], key: str, found: str) -> None:
    with pytest.raises(ConfigError) as err:
        read_decay_config(section, source="conf/memory.yaml")
    msg = str(err.value)
    assert msg.startswith(f"conf/memory.yaml: {key}: expected ") and f"got {found}" in msg, msg
    assert err.value.source == "conf/memory.yaml" and err.value.key == key


def test_a_section_that_is_not_a_mapping() -> None:
    with pytest.raises(ConfigError, match=r"x.yaml: decay: expected a mapping, got \[1\]"):
        read_decay_config([1], source="x.yaml")
