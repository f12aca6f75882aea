//! SQLite: one writer at a time; a lock wait is the busy timeout of the connection, and a
//! lost race is `SQLITE_BUSY` or `SQLITE_LOCKED`.

use std::time::Duration;

use sea_orm_migration::sea_orm::{DbBackend, Statement, sqlx};

use super::{Contention, Probe, TableLock};

/// SQLite's answers.
pub struct Sqlite;

impl Probe for Sqlite {
    fn bound_lock_waits(&self, _timeout: Duration) -> Vec<Statement> {
        vec![]
    }

    fn unbound_lock_waits(&self) -> Vec<Statement> {
        vec![]
    }

    fn session_id(&self) -> Option<Statement> {
        None
    }

    fn blockers(&self, _session: i64) -> Statement {
        Statement::from_string(DbBackend::Sqlite, "SELECT 0, '', 0.0, '' WHERE 0")
    }

    fn lock_in_order(&self, _first: TableLock, _then: &[TableLock]) -> Vec<Statement> {
        vec![]
    }

    fn contention(&self, error: &dyn sqlx::error::DatabaseError) -> Option<Contention> {
        // The primary result code is the low byte: SQLITE_BUSY (5) and SQLITE_LOCKED (6),
        // whatever the extended code.
        let code: i64 = error.code()?.parse().ok()?;
        matches!(code & 0xff, 5 | 6).then_some(Contention::LockTimeout)
    }

    fn tables(&self) -> Statement {
        Statement::from_string(
            DbBackend::Sqlite,
            "SELECT name FROM sqlite_master \
             WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY 1",
        )
    }
}
