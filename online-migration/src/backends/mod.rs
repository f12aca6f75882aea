//! What PostgreSQL, MariaDB/MySQL and SQLite do differently when a step shares the database
//! with a live application: how a transaction bounds its lock waits, which errors mean "lost
//! a race for a lock, try again", how to name the session in the way, and where the
//! replicas are. Statement builders and catalogue answers only: nothing here runs a step.
//!
//! One implementation per backend behind [`Probe`]; [`of`] is the one place that picks it.
//! Every statement here is fixed text with bound values.

pub mod mysql;
pub mod postgres;
pub mod sqlite;

use std::time::Duration;

use sea_orm_migration::sea_orm::{DbBackend, DbErr, QueryResult, RuntimeErr, Statement, sqlx};

/// Why a statement gave up: another session held what it needed. All of them are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contention {
    /// The lock was not granted within the lock timeout (or at once, for `NOWAIT`).
    LockTimeout,
    /// The server broke a lock cycle by failing this transaction.
    Deadlock,
    /// The transaction could not be serialized with a concurrent one (or, on Galera,
    /// lost certification to a write replicated from another node).
    SerializationFailure,
}

impl Contention {
    /// For log lines: `lock timeout`, `deadlock`, `serialization failure`.
    pub fn as_str(self) -> &'static str {
        match self {
            Contention::LockTimeout => "lock timeout",
            Contention::Deadlock => "deadlock",
            Contention::SerializationFailure => "serialization failure",
        }
    }
}

/// A session that stood in the migration's way.
#[derive(Debug, Clone, PartialEq)]
pub struct Blocker {
    /// PostgreSQL backend pid, MariaDB connection id.
    pub session: i64,
    /// `idle in transaction`, `active`, `Sleep`, …
    pub state: String,
    /// How long its transaction has been open, in seconds.
    pub open_for: f64,
    /// The start of its last statement.
    pub query: String,
}

impl std::fmt::Display for Blocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "session {} ({}, transaction open {:.0}s",
            self.session, self.state, self.open_for
        )?;
        match self.query.trim() {
            "" => write!(f, ")"),
            query => write!(f, ", last statement: {query})"),
        }
    }
}

/// A table a step locks, and how (PostgreSQL's lock mode names).
#[derive(Debug, Clone, Copy)]
pub struct TableLock {
    /// The table.
    pub table: &'static str,
    /// `ACCESS EXCLUSIVE`, `SHARE ROW EXCLUSIVE`, …
    pub mode: &'static str,
}

impl TableLock {
    /// Conflicts with everything, plain reads included.
    pub const fn access_exclusive(table: &'static str) -> Self {
        TableLock {
            table,
            mode: "ACCESS EXCLUSIVE",
        }
    }

    /// Conflicts with writes and DDL; reads go on.
    pub const fn share_row_exclusive(table: &'static str) -> Self {
        TableLock {
            table,
            mode: "SHARE ROW EXCLUSIVE",
        }
    }

    /// Conflicts with writes, row locks and DDL; plain reads go on.
    pub const fn exclusive(table: &'static str) -> Self {
        TableLock {
            table,
            mode: "EXCLUSIVE",
        }
    }
}

/// One short step of giving a table a constraint: `lock` (if any) taken first (a bounded
/// wait), then `then` at once or not at all, then the statements, in one transaction
/// ([`crate::locks::run_step`]).
#[derive(Debug, Clone, Default)]
pub struct ConstraintStep {
    /// The lock to take first (bounded wait).
    pub lock: Option<TableLock>,
    /// Locks taken after it, at once or not at all.
    pub then: Vec<TableLock>,
    /// Fixed DDL.
    pub statements: Vec<String>,
}

/// One backend's answers.
pub trait Probe: Send + Sync {
    /// Statements that make the current transaction give up any lock wait after `timeout`.
    fn bound_lock_waits(&self, timeout: Duration) -> Vec<Statement>;

    /// Statements that undo [`Probe::bound_lock_waits`] where its effect outlives the
    /// transaction (session variables), run before the connection goes back to the pool.
    fn unbound_lock_waits(&self) -> Vec<Statement>;

    /// The current session's id, as [`Probe::blockers`] takes it; `None` where another
    /// connection cannot look (SQLite: one connection, one process).
    fn session_id(&self) -> Option<Statement>;

    /// Sessions that block `session`, as rows of (id, state, seconds open, query).
    fn blockers(&self, session: i64) -> Statement;

    /// Statements that take a step's table locks up front: `first` waiting (at most the
    /// lock timeout, while holding nothing), the others at once or not at all. Where the
    /// backend has no such statement, none: its DDL takes what it needs.
    fn lock_in_order(&self, first: TableLock, then: &[TableLock]) -> Vec<Statement>;

    /// What the primary knows of its streaming replicas, one row each: name (text), the
    /// primary's WAL position and the replica's replayed position (bytes, bigint; the latter
    /// NULL until reported), and the lag it last reported, plus the time since it reported
    /// (seconds, float, NULL when none). `None` where the primary cannot see its replicas'
    /// positions.
    fn replica_positions(&self) -> Option<Statement> {
        None
    }

    /// A statement that writes a little WAL and nothing else, so that replicas receive some
    /// and report their positions now rather than at their next status interval.
    fn prompt_replica_reports(&self) -> Option<Statement> {
        None
    }

    /// One row, one boolean: whether the connected role may read
    /// [`Probe::replica_positions`] (other roles see NULL positions).
    fn may_see_replica_positions(&self) -> Option<Statement> {
        None
    }

    /// The names of the base tables of the current database or schema, one per row.
    fn tables(&self) -> Statement;

    /// Whether `error` means a lost race for a lock.
    fn contention(&self, error: &dyn sqlx::error::DatabaseError) -> Option<Contention>;
}

/// The implementation for `backend`.
pub fn of(backend: DbBackend) -> &'static dyn Probe {
    match backend {
        DbBackend::Postgres => &postgres::Postgres,
        DbBackend::Sqlite => &sqlite::Sqlite,
        _ => &mysql::MySql,
    }
}

/// Whether `error` is contention on `backend`, and which kind.
pub fn contention(backend: DbBackend, error: &DbErr) -> Option<Contention> {
    of(backend).contention(database_error(error)?)
}

/// The server's own error inside `error`, if the server sent one.
pub fn database_error(error: &DbErr) -> Option<&dyn sqlx::error::DatabaseError> {
    let (DbErr::Exec(RuntimeErr::SqlxError(error))
    | DbErr::Query(RuntimeErr::SqlxError(error))
    | DbErr::Conn(RuntimeErr::SqlxError(error))) = error
    else {
        return None;
    };
    error.as_database_error()
}

/// Decodes a row of [`Probe::blockers`].
pub fn blocker(row: &QueryResult) -> Result<Blocker, DbErr> {
    Ok(Blocker {
        session: row.try_get_by_index(0)?,
        state: row.try_get_by_index(1)?,
        open_for: row.try_get_by_index(2)?,
        query: row.try_get_by_index(3)?,
    })
}
