"""Alembic environment: always driven programmatically with a live connection."""

from alembic import context

from memory.store._models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                  compare_type=True)
with context.begin_transaction():
    context.run_migrations()
