//! PostgreSQL: `lock_timeout` per transaction, SQLSTATEs, `pg_blocking_pids`, the
//! replicas' positions in `pg_stat_replication`.

use std::time::Duration;

use sea_orm_migration::sea_orm::{DbBackend, Statement, sqlx};

use super::{Contention, Probe, TableLock};

/// PostgreSQL's answers.
pub struct Postgres;

impl Probe for Postgres {
    /// `SET LOCAL`, spelled as a function so the value is bound: it ends with the transaction.
    /// The step's work itself is not cut short by a `statement_timeout` the role or database
    /// carries: building an index or validating a key over a big table takes as long as it
    /// takes, and only its lock waits are bounded.
    fn bound_lock_waits(&self, timeout: Duration) -> Vec<Statement> {
        let millis = format!("{}ms", timeout.as_millis().max(1));
        vec![Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT set_config('lock_timeout', $1, true), \
             set_config('statement_timeout', '0', true)",
            [millis.into()],
        )]
    }

    fn unbound_lock_waits(&self) -> Vec<Statement> {
        vec![]
    }

    fn session_id(&self) -> Option<Statement> {
        Some(Statement::from_string(
            DbBackend::Postgres,
            "SELECT CAST(pg_backend_pid() AS bigint)",
        ))
    }

    fn blockers(&self, session: i64) -> Statement {
        Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT CAST(a.pid AS bigint), COALESCE(a.state, ''), \
               CAST(COALESCE(EXTRACT(EPOCH FROM now() - a.xact_start), 0) AS float8), \
               COALESCE(left(a.query, 120), '') \
             FROM pg_stat_activity a \
             WHERE a.pid = ANY (pg_blocking_pids(CAST($1 AS integer))) \
             ORDER BY a.xact_start LIMIT 5",
            [session.into()],
        )
    }

    fn lock_in_order(&self, first: TableLock, then: &[TableLock]) -> Vec<Statement> {
        let lock = |lock: &TableLock, nowait: &str| {
            let sql = format!("LOCK TABLE {} IN {} MODE{nowait}", lock.table, lock.mode);
            Statement::from_string(DbBackend::Postgres, sql)
        };
        let mut statements = vec![lock(&first, "")];
        statements.extend(then.iter().map(|l| lock(l, " NOWAIT")));
        statements
    }

    fn replica_positions(&self) -> Option<Statement> {
        // Walsenders still sending a base backup have no replay position: not replicas yet.
        Some(Statement::from_string(
            DbBackend::Postgres,
            "SELECT CAST(application_name AS text), \
                    CAST(pg_current_wal_lsn() - '0/0'::pg_lsn AS bigint), \
                    CAST(replay_lsn - '0/0'::pg_lsn AS bigint), \
                    CAST(EXTRACT(epoch FROM replay_lag + (clock_timestamp() - reply_time)) \
                         AS float8) \
             FROM pg_stat_replication WHERE state IN ('streaming', 'catchup') \
             ORDER BY application_name",
        ))
    }

    fn prompt_replica_reports(&self) -> Option<Statement> {
        // An xid makes the commit write a (tiny) commit record.
        Some(Statement::from_string(
            DbBackend::Postgres,
            "SELECT CAST(pg_current_xact_id() AS text)",
        ))
    }

    fn may_see_replica_positions(&self) -> Option<Statement> {
        // Superusers are members of every role for pg_has_role.
        Some(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')",
        ))
    }

    fn contention(&self, error: &dyn sqlx::error::DatabaseError) -> Option<Contention> {
        match error.code()?.as_ref() {
            // lock_not_available: lock_timeout or NOWAIT.
            "55P03" => Some(Contention::LockTimeout),
            "40P01" => Some(Contention::Deadlock),
            "40001" => Some(Contention::SerializationFailure),
            _ => None,
        }
    }

    fn tables(&self) -> Statement {
        Statement::from_string(
            DbBackend::Postgres,
            "SELECT CAST(tablename AS text) FROM pg_tables \
             WHERE schemaname = current_schema() ORDER BY 1",
        )
    }
}
