"""alembic's entry point for kindling's revisions: always on the connection that
``kindling.store.migrate`` hands over (in its transaction), never from an ini file."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
