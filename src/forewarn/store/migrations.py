"""Schema versioning for the telemetry store: create an empty store, upgrade an older one, refuse a newer one.

The version lives in ``forewarn_meta`` under the key ``schema_version``. :func:`ensure_schema`, which
:class:`~forewarn.store.telemetry.TelemetryStore` calls when it opens a store, does one of these things:

* the version is :data:`~forewarn.store.schema.SCHEMA_VERSION` → nothing (one indexed read, no lock);
* the database is empty → ``metadata.create_all`` and write the version;
* the database holds tables but no version (another application's database) →
  :class:`~forewarn.errors.StoreError` naming a few of them: forewarn never writes into it;
* the version is not a whole number from 1 up (``"2b"``) → :class:`~forewarn.errors.SchemaVersionError`
  naming the value;
* the version is older → run the steps of :data:`MIGRATIONS` from that version up, each through Alembic's
  :class:`~alembic.operations.Operations` in batch mode (so SQLite can alter tables), and bump the version
  after each step — all in **one** transaction, so a failed upgrade leaves the store as it was;
* the version is newer → :class:`~forewarn.errors.SchemaVersionError`: an old forewarn never writes into
  a store it does not understand.

Creating and upgrading happen under a lock and re-read the version inside it, so two processes opening the
same old store at once migrate it once: on SQLite ``BEGIN IMMEDIATE`` takes the database's write lock, on
PostgreSQL a transaction-level advisory lock (``pg_advisory_xact_lock``) serialises the openers (DDL is
transactional on both).

The versions so far:

1. ``forewarn_meta``, ``flow_runs``, ``task_attempts``.
2. ``flow_runs.features`` (JSON text, nullable) and the ``predictions`` table (:func:`_v2_features_and_predictions`).
3. ``task_attempts.wait_seconds`` (float, nullable) (:func:`_v3_attempt_wait_seconds`).
4. the ``circuit_breakers`` table, one row per shared circuit breaker (:func:`_v4_circuit_breakers`).
5. ``task_attempts.replica`` and ``task_attempts.provider`` (nullable) for redundant and failover calls
   (:func:`_v5_replica_and_provider`).
6. ``flow_runs.tags`` (JSON text list, nullable), the run's Prefect tags (:func:`_v6_flow_run_tags`).
7. ``task_attempts.execution_id`` (text, not null, ``''``) and the unique key ``(task_run_id, execution_id,
   attempt)`` (:func:`_v7_attempt_execution_id`).

Adding schema version 8 means: change the tables in :mod:`forewarn.store.schema`, set ``SCHEMA_VERSION = 8``
and append a step that turns a version-7 store into a version-8 one::

    def _v8_add_queue_column(op: Operations) -> None:
        with op.batch_alter_table("task_attempts") as batch:
            batch.add_column(sa.Column("queue", sa.String(255)))

    MIGRATIONS = [..., (7, _v7_attempt_execution_id), (8, _v8_add_queue_column)]

A step must only use ``op`` and spell out the columns it creates (never import the current tables: they
describe the newest schema, not the one the step starts from). A test compares a migrated store with a
freshly created one, column by column and index by index.

Example::

    >>> import sqlalchemy as sa
    >>> engine = sa.create_engine("sqlite://", isolation_level="AUTOCOMMIT")
    >>> with engine.connect() as conn:
    ...     ensure_schema(conn, url="sqlite://"), read_version(conn)
    (7, 7)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations

from forewarn.errors import SchemaVersionError, StoreError
from forewarn.store import schema

Migration = Callable[[Operations], None]
"""One upgrade step: gets Alembic ``Operations`` bound to the store's connection, inside its transaction."""


def _v2_features_and_predictions(op: Operations) -> None:
    """Version 1 → 2: ``flow_runs.features`` and the ``predictions`` table with its three indexes.

    The column is added last (SQLite's ``ALTER TABLE ADD COLUMN``; batch mode does not rebuild the table
    for it), which is where :data:`forewarn.store.schema.flow_runs` declares it, so migrated and new stores match.
    """
    with op.batch_alter_table("flow_runs") as batch:
        batch.add_column(
            sa.Column(
                "features",
                sa.Text,
                nullable=True,
                comment="JSON object of pre-run feature_<name> attributes, names unprefixed",
            )
        )
    op.create_table(
        "predictions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True),
        sa.Column("flow_run_id", sa.String(255), nullable=False),
        sa.Column("flow_name", sa.String(255), nullable=False),
        sa.Column("deployment", sa.String(255)),
        sa.Column("scheduled_start", schema.UTCDateTime),
        sa.Column("predicted_at", schema.UTCDateTime, nullable=False),
        sa.Column("lead_seconds", sa.Float, comment="scheduled_start - predicted_at"),
        sa.Column("risk", sa.Float, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("warned", sa.Boolean(create_constraint=False), nullable=False),
        sa.Column("model_version", sa.String(255), nullable=False),
        sa.Column("reasons", sa.Text, nullable=False, server_default="[]", comment="JSON list of short strings"),
        sa.Column("source", sa.String(16), nullable=False, comment="hook | forecast"),
        sa.PrimaryKeyConstraint("id", name="pk_predictions"),
    )
    op.create_index("ix_predictions_flow_run_id", "predictions", ["flow_run_id"])
    op.create_index("ix_predictions_predicted_at", "predictions", ["predicted_at"])
    op.create_index("ix_predictions_flow_name_scheduled_start", "predictions", ["flow_name", "scheduled_start"])


def _v3_attempt_wait_seconds(op: Operations) -> None:
    """Version 2 → 3: ``task_attempts.wait_seconds``, the wait for a Prefect concurrency slot or rate limit.

    Added last, where :data:`forewarn.store.schema.task_attempts` declares it; existing rows get NULL (no
    limit was waited on).
    """
    with op.batch_alter_table("task_attempts") as batch:
        batch.add_column(sa.Column("wait_seconds", sa.Float, nullable=True))


def _v4_circuit_breakers(op: Operations) -> None:
    """Version 3 → 4: the ``circuit_breakers`` table, one row per shared circuit breaker."""
    op.create_table(
        "circuit_breakers",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, comment="closed | open | half_open"),
        sa.Column("since", sa.Float, comment="clock seconds of the last transition; null: never"),
        sa.Column("trials", sa.Integer, nullable=False, comment="trial calls let through in this half-open period"),
        sa.Column("trial_successes", sa.Integer, nullable=False),
        sa.Column("trial_at", sa.Float, comment="clock seconds the last trial was let through; null: never"),
        sa.Column("outcomes", sa.Text, nullable=False, comment="count window: one character (SFsf) per call"),
        sa.Column("buckets", sa.Text, nullable=False, comment="time window: JSON [[index, calls, failures, slow]]"),
        sa.Column("version", sa.BigInteger, nullable=False, comment="one more with every change"),
        sa.Column("updated_at", schema.UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_circuit_breakers"),
    )


def _v5_replica_and_provider(op: Operations) -> None:
    """Version 4 → 5: ``task_attempts.replica`` and ``task_attempts.provider``, both nullable, added last.

    Existing rows keep null in both: they were neither redundant copies nor failover calls.
    """
    with op.batch_alter_table("task_attempts") as batch:
        batch.add_column(
            sa.Column("replica", sa.Integer, comment="1, 2, ... for redundant copies of one call; null otherwise")
        )
        batch.add_column(sa.Column("provider", sa.String(255), comment="the failover provider that served the attempt"))


def _v6_flow_run_tags(op: Operations) -> None:
    """Version 5 → 6: ``flow_runs.tags``, a JSON list of the run's Prefect tags, nullable, added last.

    Existing rows keep null (no tags known): runs recorded or imported before version 6 were stored
    without them; ``forewarn import-prefect`` skips runs the store already holds, so it does not fill them in.
    """
    with op.batch_alter_table("flow_runs") as batch:
        batch.add_column(
            sa.Column("tags", sa.Text, comment="JSON list of the run's Prefect tags, sorted; null: none known")
        )


def _v7_attempt_execution_id(op: Operations) -> None:
    """Version 6 → 7: ``task_attempts.execution_id`` (not null, default ``''``, added last), and the attempts'
    unique key becomes ``(task_run_id, execution_id, attempt)`` instead of ``(task_run_id, attempt)``.

    Existing rows get ``''``: one execution each, as before, so they stay unique under the new key. The old
    constraint is found by its columns, not assumed by name (a store made by hand, or by another naming
    convention, may call it something else). On PostgreSQL it is dropped and the new one added with
    ``ALTER TABLE``; the column's default makes adding it a catalogue change, with no table rewrite. SQLite
    cannot drop a constraint, so batch mode rebuilds ``task_attempts`` (a copy of every row, in the upgrade's
    one transaction: about a second per million attempts).
    """
    table = "task_attempts"
    # An unnamed constraint (SQLite only) is named by this convention when batch mode reflects the table.
    convention = {"uq": "uq_%(table_name)s_%(column_0_N_name)s"}
    inspector = sa.inspect(op.get_bind())
    old = [
        u["name"] or "uq_task_attempts_task_run_id_attempt"
        for u in inspector.get_unique_constraints(table)
        if list(u["column_names"]) == ["task_run_id", "attempt"]
    ]
    with op.batch_alter_table(table, naming_convention=convention) as batch:
        batch.add_column(
            sa.Column(
                "execution_id",
                sa.String(64),
                nullable=False,
                server_default="",
                comment="one execution of the task run in a process (random per call); '' for imported and pre-7 rows",
            )
        )
        for name in old:
            batch.drop_constraint(name, type_="unique")
        batch.create_unique_constraint(
            "uq_task_attempts_task_run_id_execution_id_attempt", ["task_run_id", "execution_id", "attempt"]
        )


MIGRATIONS: list[tuple[int, Migration]] = [
    (2, _v2_features_and_predictions),
    (3, _v3_attempt_wait_seconds),
    (4, _v4_circuit_breakers),
    (5, _v5_replica_and_provider),
    (6, _v6_flow_run_tags),
    (7, _v7_attempt_execution_id),
]
"""Ordered upgrade steps ``(n, step)``; ``step`` turns a version ``n - 1`` store into version ``n``."""

VERSION_KEY = "schema_version"

_VERSION_TEXT = re.compile(r"[0-9]{1,9}")
_TABLES_SHOWN = 5

# pg_advisory_xact_lock key: the bytes of "forewarn" as a (positive) bigint.
PG_LOCK_KEY = int.from_bytes(b"forewarn", "big")


def read_version(conn: sa.Connection, *, url: str = "the telemetry store") -> int | None:
    """The store's schema version, or ``None`` when the database holds no forewarn store yet.

    The stored value is text another program may have written: anything but a whole number from 1 up
    raises :class:`~forewarn.errors.SchemaVersionError` naming the value (``url``, already masked, names
    the store), never a bare ``ValueError``.

    Example::

        >>> engine = sa.create_engine("sqlite://")
        >>> with engine.connect() as conn:
        ...     print(read_version(conn))
        None
    """
    if not sa.inspect(conn).has_table(schema.forewarn_meta.name):
        return None
    meta = schema.forewarn_meta
    value = conn.execute(sa.select(meta.c.value).where(meta.c.key == VERSION_KEY)).scalar_one_or_none()
    return parse_version(value, url=url)


def parse_version(value: object, *, url: str = "the telemetry store") -> int | None:
    """The schema version that ``forewarn_meta.schema_version`` holds as text (``None``: no row).

    The column is text, but SQLite keeps whatever another program stored in it: any value is read as
    its text, and only ASCII digits making a number from 1 up are a version.

    Example::

        >>> parse_version("2"), parse_version(None)
        (2, None)
        >>> parse_version("2b", url="sqlite:///t.db")
        Traceback (most recent call last):
        ...
        forewarn.errors.SchemaVersionError: sqlite:///t.db: forewarn_meta.schema_version is '2b', not a ...
    """
    if value is None:
        return None
    text = str(value)
    # fullmatch on ASCII digits: int() would also take " 2", "2_0" and other scripts' digits
    if not _VERSION_TEXT.fullmatch(text) or int(text) < 1:
        raise SchemaVersionError(
            f"{url}: forewarn_meta.schema_version is {text[:40]!r}, not a schema version (a whole number "
            f"such as {schema.SCHEMA_VERSION}); the store was not written by forewarn or was damaged. Point "
            "FOREWARN_DB_URL at another store, or restore this one from a backup",
            url=url,
        )
    return int(text)


def foreign_tables(conn: sa.Connection) -> list[str]:
    """The tables and views of the database's default schema, sorted; forewarn's ``forewarn_meta`` excluded.

    What :func:`ensure_schema` shows when it refuses a database that holds something but no forewarn
    version marker: another application's data, which forewarn must not write into.

    Example::

        >>> engine = sa.create_engine("sqlite://")
        >>> with engine.connect() as conn:
        ...     _ = conn.exec_driver_sql("create table orders (id int)")
        ...     foreign_tables(conn)
        ['orders']
    """
    inspector = sa.inspect(conn)
    names = set(inspector.get_table_names()) | set(inspector.get_view_names())
    return sorted(names - {schema.forewarn_meta.name})


@contextmanager
def write_transaction(conn: sa.Connection) -> Iterator[sa.Connection]:
    """Run a block in one explicit transaction that holds the store's write lock from its first statement.

    ``conn`` must be in ``AUTOCOMMIT`` mode (as every :class:`~forewarn.store.telemetry.TelemetryStore` connection
    is); the transaction is started and ended here with plain SQL. SQLite gets ``BEGIN IMMEDIATE`` (the
    write lock is taken now, waiting up to ``busy_timeout``, instead of failing later when a read turns
    into a write); PostgreSQL gets ``BEGIN``.

    Example::

        >>> engine = sa.create_engine("sqlite://", isolation_level="AUTOCOMMIT")
        >>> with engine.connect() as conn, write_transaction(conn):
        ...     _ = conn.exec_driver_sql("create table t (x int)")
    """
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.dialect.name == "sqlite" else "BEGIN")
    try:
        yield conn
    except BaseException:
        conn.exec_driver_sql("ROLLBACK")
        raise
    conn.exec_driver_sql("COMMIT")


def check_migrations(migrations: Sequence[tuple[int, Migration]], target: int) -> dict[int, Migration]:
    """Check that ``migrations`` holds exactly one step for each version 2 .. ``target``; map them.

    Example::

        >>> check_migrations([], 1)
        {}
        >>> check_migrations([], 2)
        Traceback (most recent call last):
        ...
        forewarn.errors.StoreError: forewarn.store.migrations.MIGRATIONS has no step for schema version(s) [2] ...
    """
    steps: dict[int, Migration] = {}
    for version, step in migrations:
        if version in steps:
            raise StoreError(f"forewarn.store.migrations.MIGRATIONS has two steps for schema version {version}")
        steps[version] = step
    missing = [v for v in range(2, target + 1) if v not in steps]
    extra = sorted(v for v in steps if not 2 <= v <= target)
    if missing or extra:
        raise StoreError(
            f"forewarn.store.migrations.MIGRATIONS has no step for schema version(s) {missing} "
            f"or steps beyond SCHEMA_VERSION={target}: {extra}; each version n in 2..{target} needs one "
            "step (n, upgrade_from_n_minus_1)"
        )
    return steps


def ensure_schema(
    conn: sa.Connection,
    *,
    url: str,
    create: bool = True,
    target: int | None = None,
    migrations: Sequence[tuple[int, Migration]] | None = None,
) -> int:
    """Make the store behind ``conn`` readable by this forewarn and return its schema version.

    ``url`` (already masked) only names the store in errors. ``create=False`` refuses to create a store
    in an empty database (an older store is still upgraded: this forewarn cannot read it otherwise).
    ``target`` and ``migrations`` default to :data:`~forewarn.store.schema.SCHEMA_VERSION` and
    :data:`MIGRATIONS`, read when called.

    Raises :class:`~forewarn.errors.SchemaVersionError` for a store written by a newer forewarn or a
    version that is not one, and :class:`~forewarn.errors.StoreError` for a database with other tables and
    no version marker, or an empty database with ``create=False`` (:func:`check_openable`).

    Example::

        >>> engine = sa.create_engine("sqlite://", isolation_level="AUTOCOMMIT")
        >>> with engine.connect() as conn:
        ...     ensure_schema(conn, url="sqlite://", create=False)
        Traceback (most recent call last):
        ...
        forewarn.errors.StoreError: sqlite:// holds no forewarn telemetry store ...
    """
    target = schema.SCHEMA_VERSION if target is None else target
    version = read_version(conn, url=url)  # fast path: an up-to-date store takes no lock
    if version == target:
        return version
    foreign = _foreign_if_unversioned(conn, version)
    if foreign and version is None:
        # Another opener may have committed a new store (its tables and its version in one transaction)
        # between the two reads above: its tables are visible now, so its version is too. Read it again
        # before calling the database another application's.
        version = read_version(conn, url=url)
        if version == target:
            return version
        foreign = _foreign_if_unversioned(conn, version)
    check_openable(version, foreign, url=url, create=create, target=target)
    steps = check_migrations(MIGRATIONS if migrations is None else migrations, target)
    with write_transaction(conn):
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_LOCK_KEY)))
        version = read_version(conn, url=url)  # again, under the lock: another opener may have done the work
        if version == target:
            return version
        check_openable(version, _foreign_if_unversioned(conn, version), url=url, create=create, target=target)
        if version is None:
            schema.metadata.create_all(conn)
            _write_version(conn, target)
        else:
            _upgrade(conn, version, target, steps, url=url)
    return target


def check_openable(
    version: int | None, foreign: Sequence[str], *, url: str, create: bool, target: int | None = None
) -> None:
    """Refuse what :func:`ensure_schema` must not touch: a database with other tables (``foreign``, from
    :func:`foreign_tables`) and no forewarn version marker, an empty one when ``create`` is false, and a
    store written by a newer forewarn. ``version`` is :func:`read_version`'s answer. Writes nothing.

    Example::

        >>> check_openable(None, ["orders"], url="sqlite:///shop.db", create=True)
        Traceback (most recent call last):
        ...
        forewarn.errors.StoreError: sqlite:///shop.db is not a forewarn store: it holds 1 table(s) ('orders') ...
    """
    target = schema.SCHEMA_VERSION if target is None else target
    if version is None:
        if foreign:
            raise StoreError(_foreign_message(url, foreign), url=url)
        if not create:
            raise StoreError(
                f"{url} holds no forewarn telemetry store (no forewarn_meta table); open it with create=True "
                "to create one, or point FOREWARN_DB_URL at an existing store",
                url=url,
            )
    elif version > target:
        raise SchemaVersionError(
            f"{url}: this store was written by a newer forewarn (schema {version}, this forewarn reads up "
            f"to {target}): upgrade forewarn (pip install -U forewarn) or point FOREWARN_DB_URL at another "
            "store",
            url=url,
        )


def _foreign_if_unversioned(conn: sa.Connection, version: int | None) -> list[str]:
    return foreign_tables(conn) if version is None else []


def _foreign_message(url: str, found: Sequence[str]) -> str:
    # Table names are another program's text: shown quoted and cut, a few of them, never all.
    shown = ", ".join(repr(name[:40]) for name in found[:_TABLES_SHOWN])
    more = f" and {len(found) - _TABLES_SHOWN} more" if len(found) > _TABLES_SHOWN else ""
    return (
        f"{url} is not a forewarn store: it holds {len(found)} table(s) ({shown}{more}) but no "
        f"forewarn_meta.{VERSION_KEY}, so it belongs to another application and forewarn will not write "
        "into it. Point FOREWARN_DB_URL at an empty database or at a forewarn store"
    )


def _upgrade(conn: sa.Connection, version: int, target: int, steps: dict[int, Migration], *, url: str) -> None:
    context = MigrationContext.configure(connection=conn, opts={"render_as_batch": True})
    op = Operations(context)
    for next_version in range(version + 1, target + 1):
        try:
            steps[next_version](op)
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else repr(exc)
            raise StoreError(
                f"{url}: upgrading the store from schema {next_version - 1} to {next_version} failed "
                f"({type(exc).__name__}: {reason}); the store was "
                f"left at schema {version}, unchanged. Report this at forewarn's issue tracker, or point "
                "FOREWARN_DB_URL at another store",
                url=url,
            ) from exc
        _write_version(conn, next_version)


def _write_version(conn: sa.Connection, version: int) -> None:
    write_meta(conn, VERSION_KEY, str(version))


def write_meta(conn: sa.Connection, key: str, value: str) -> None:
    """Set ``forewarn_meta[key] = value`` (update, or insert when the key is new), inside the caller's transaction.

    Example::

        >>> engine = sa.create_engine("sqlite://", isolation_level="AUTOCOMMIT")
        >>> with engine.connect() as conn:
        ...     _ = ensure_schema(conn, url="sqlite://")
        ...     write_meta(conn, "prefect_import", "2026-01-01T00:00:00+00:00")
        ...     conn.execute(sa.text("select value from forewarn_meta where key = 'prefect_import'")).scalar()
        '2026-01-01T00:00:00+00:00'
    """
    meta = schema.forewarn_meta
    updated = conn.execute(sa.update(meta).where(meta.c.key == key).values(value=value))
    if updated.rowcount == 0:
        conn.execute(sa.insert(meta).values(key=key, value=value))


__all__ = [
    "MIGRATIONS",
    "write_meta",
    "Migration",
    "VERSION_KEY",
    "check_migrations",
    "check_openable",
    "ensure_schema",
    "foreign_tables",
    "parse_version",
    "read_version",
    "write_transaction",
]
