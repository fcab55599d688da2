"""Alembic migrations of the relational schema, and the rule every one of them follows.

**The rule: a migration must be restartable after a kill at any point, on every backend.**

MariaDB/MySQL commit implicitly at every DDL statement, so a migration is not one transaction
there: a process killed in the middle (deploy, OOM, SIGKILL, power) leaves the steps done so far
in place and the revision stamp not yet written. The next start runs the same migration again
from its first step, over whatever the last one left. Therefore, in ``upgrade()``:

1. Every schema step checks the live schema first and does nothing if it is already done. Use
   the helpers below (``ensure_table``, ``ensure_index``, ``ensure_column``,
   ``drop_index_if_present``, ``drop_column_if_present``, ``drop_table_if_present``) instead of
   the bare ``op.create_table`` / ``op.create_index`` / ``op.add_column`` / ``op.drop_*``.
2. One DDL statement per step, in an order where every prefix is a valid state to resume from
   (create a table before its indexes; add a column before filling it).
3. Data changes are idempotent: ``UPDATE ... WHERE <not yet done>``, inserts that ignore rows
   already present. Never "move" data with a DELETE that a second run could repeat.
4. Never rely on a transaction spanning DDL statements, and never write the revision stamp by
   hand: Alembic writes it after ``upgrade()`` returns, so a stamp always means "all steps done".

``tests/test_migrations_kill.py`` SIGKILLs the first ``initialize()`` after every write statement
and checks that a normal start then reaches head with a schema equal to the models; a new
migration is covered by it without further work, as long as it follows the rule.
"""

from __future__ import annotations

from ._steps import (drop_column_if_present, drop_index_if_present, drop_table_if_present, ensure_column,
                     ensure_index, ensure_table)

__all__ = ["drop_column_if_present", "drop_index_if_present", "drop_table_if_present", "ensure_column",
           "ensure_index", "ensure_table"]
