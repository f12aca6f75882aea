//! PostgreSQL: `lock_timeout` per transaction, SQLSTATEs, `pg_blocking_pids`.

use std::time::Duration;

use sea_orm_migration::sea_orm::{DbBackend, Statement, sqlx};

use super::{Backend, Contention, TableLock};

pub struct Postgres;

impl Backend for Postgres {
    /// `SET LOCAL`, spelled as a function so the value is bound: it ends with the transaction.
    fn bound_lock_waits(&self, timeout: Duration) -> Vec<Statement> {
        let millis = format!("{}ms", timeout.as_millis().max(1));
        vec![Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT set_config('lock_timeout', $1, true)",
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

    /// Ownership of `deployment` (its triggers and columns change), the right to create in
    /// the schema, and on `job_agent` what a foreign key to it and a lock on it take.
    fn missing_privileges(&self) -> Statement {
        Statement::from_string(
            DbBackend::Postgres,
            "SELECT needed FROM (VALUES \
               ('owner of table deployment (its triggers and columns change)', \
                pg_has_role((SELECT relowner FROM pg_class \
                             WHERE oid = to_regclass('deployment')), 'USAGE')), \
               ('CREATE on schema ' || current_schema(), \
                has_schema_privilege(current_schema(), 'CREATE')), \
               ('SELECT on table job_agent', \
                has_table_privilege(to_regclass('job_agent'), 'SELECT')), \
               ('REFERENCES on table job_agent (for the join table foreign key)', \
                has_table_privilege(to_regclass('job_agent'), 'REFERENCES')), \
               ('UPDATE on table job_agent (to lock it while its keys change)', \
                has_table_privilege(to_regclass('job_agent'), 'UPDATE')) \
             ) AS privilege(needed, granted) WHERE NOT granted",
        )
    }

    fn tables(&self) -> Statement {
        Statement::from_string(
            DbBackend::Postgres,
            "SELECT CAST(tablename AS text) FROM pg_tables \
             WHERE schemaname = current_schema() ORDER BY 1",
        )
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
}
