"""Durable state behind one seam: `open_store(project)` picks SQLite or PostgreSQL by URL.

`ORCHESTR_STATE_URL` wins over `state: { url: ... }` in orchestr.yaml; neither means SQLite under
`state_dir`. psycopg is imported only when a postgresql:// URL is used.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from orchestr.errors import ConfigurationError
from orchestr.store.base import (
    SCHEMA_VERSION,
    Lock,
    LockHandover,
    RunRow,
    Store,
    StoreInfo,
    host_id,
    redact_url,
)
from orchestr.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from orchestr.project import Project
    from orchestr.store.fake import FakeLock, FakeStore
    from orchestr.store.postgres import LeaseLock, PostgresStore

    def _conforms(stores: tuple[SqliteStore, PostgresStore, FakeStore],
                  locks: tuple[LeaseLock, FakeLock]) -> tuple[list[Store], list[Lock]]:
        """mypy proves each backend implements the Protocols."""
        return list(stores), list(locks)

URL_VAR = "ORCHESTR_STATE_URL"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")

__all__ = ["SCHEMA_VERSION", "URL_VAR", "Lock", "LockHandover", "RunRow", "SqliteStore", "Store", "StoreInfo",
           "host_id", "open_store", "redact_url", "state_url"]


def state_url(project: Project) -> tuple[str | None, str]:
    """The configured state URL (None: SQLite under state_dir) and where it was set, for messages."""
    from_env = os.environ.get(URL_VAR)
    if from_env:
        return from_env, f"the environment variable {URL_VAR}"
    state = project.config.state
    if state is not None and state.url:
        return state.url, "orchestr.yaml (state.url)"
    return None, "default"


def open_store(project: Project, *, read_only: bool = False, migrating: bool = False) -> Store:
    """The project's store. `read_only` (runs, status) also works on a state dir it cannot write;
    `migrating` (`orchestr state migrate`) opens a database older than this orchestr."""
    url, where = state_url(project)
    if url is None:
        return SqliteStore(project.state_dir, read_only=read_only, migrating=migrating)
    if url.startswith(POSTGRES_SCHEMES):
        try:
            import psycopg  # noqa: F401
            import psycopg_pool  # noqa: F401
        except ImportError:
            raise ConfigurationError(
                f"the state store {redact_url(url)} (from {where}) needs psycopg: "
                "pip install 'orchestr[postgres]'") from None
        from orchestr.store.postgres import PostgresStore

        return PostgresStore(url, state_dir=project.state_dir, migrating=migrating)
    raise ConfigurationError(f"state URL {redact_url(url)} (from {where}) is not supported: use a "
                             "postgresql://HOST/DB URL, or unset it for SQLite under state_dir")
