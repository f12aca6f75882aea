//! MariaDB/MySQL: lock waits are session variables in whole seconds; errors by number;
//! blockers are the other open transactions (the processlist has no lock graph without the
//! `metadata_lock_info` plugin).

use std::time::Duration;

use sea_orm_migration::sea_orm::{DbBackend, Statement, sqlx};

use super::{Contention, Probe, TableLock};

/// MariaDB's (and MySQL's) answers.
pub struct MySql;

impl Probe for MySql {
    /// Metadata locks (DDL) are never waited for: MariaDB breaks a
    /// metadata-lock deadlock by failing the DML side, so a migration waiting for one would
    /// fail an application transaction that read the table and then writes it. A
    /// metadata lock that is not free is a lock timeout at once, retried after a backoff.
    /// Row locks wait up to the timeout (InnoDB counts whole seconds).
    fn bound_lock_waits(&self, timeout: Duration) -> Vec<Statement> {
        let seconds = timeout.as_secs_f64().ceil().max(1.0) as u64;
        vec![Statement::from_sql_and_values(
            DbBackend::MySql,
            "SET SESSION lock_wait_timeout = 0, innodb_lock_wait_timeout = ?",
            [seconds.into()],
        )]
    }

    fn unbound_lock_waits(&self) -> Vec<Statement> {
        vec![Statement::from_string(
            DbBackend::MySql,
            "SET SESSION lock_wait_timeout = DEFAULT, innodb_lock_wait_timeout = DEFAULT",
        )]
    }

    fn session_id(&self) -> Option<Statement> {
        Some(Statement::from_string(
            DbBackend::MySql,
            "SELECT CAST(CONNECTION_ID() AS SIGNED)",
        ))
    }

    /// Every other session with an open transaction, oldest first: one of them holds the
    /// metadata lock or row the migration waits for.
    fn blockers(&self, session: i64) -> Statement {
        Statement::from_sql_and_values(
            DbBackend::MySql,
            "SELECT CAST(p.ID AS SIGNED), COALESCE(p.COMMAND, ''), \
               CAST(TIMESTAMPDIFF(MICROSECOND, t.trx_started, NOW(6)) / 1e6 AS DOUBLE), \
               COALESCE(LEFT(p.INFO, 120), '') \
             FROM information_schema.INNODB_TRX t \
             JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id \
             WHERE p.ID <> ? ORDER BY t.trx_started LIMIT 5",
            [session.into()],
        )
    }

    /// MariaDB takes no metadata lock that is not free (see `bound_lock_waits`), so the
    /// order of a step's locks cannot make it wait while holding one.
    fn lock_in_order(&self, _first: TableLock, _then: &[TableLock]) -> Vec<Statement> {
        vec![]
    }

    fn contention(&self, error: &dyn sqlx::error::DatabaseError) -> Option<Contention> {
        let error = error.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()?;
        match error.number() {
            // ER_LOCK_WAIT_TIMEOUT: a metadata lock or a row lock.
            1205 => Some(Contention::LockTimeout),
            // ER_LOCK_DEADLOCK, also what Galera reports for a failed certification.
            1213 => Some(Contention::Deadlock),
            // ER_CHECKREAD: "record has changed since last read" (serializable snapshot).
            1020 => Some(Contention::SerializationFailure),
            _ => None,
        }
    }

    fn tables(&self) -> Statement {
        Statement::from_string(
            DbBackend::MySql,
            "SELECT TABLE_NAME FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1",
        )
    }
}
