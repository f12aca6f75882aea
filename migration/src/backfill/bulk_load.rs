//! Bulk-load mode for PostgreSQL: the join table's foreign keys and reverse index are set
//! aside while the backfill writes, and put back in one pass each afterwards.
//!
//! Checking two foreign keys row by row costs PostgreSQL about three times the insert itself;
//! validating them once over the finished table is a single join. Putting them back is safe on
//! a live database: each key is re-added `NOT VALID` first (from then on new rows are checked
//! and deletes cascade), links whose deployment or agent was deleted meanwhile are removed,
//! and only then is the key validated, which does not block writers. A crash in between
//! leaves the keys missing until the next run of the backfill (or its `down`) restores them.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, Statement};

use crate::tables::JOB_AGENT_ID_INDEX;

/// The join table's foreign keys: (name, column, parent table).
const FOREIGN_KEYS: [(&str, &str, &str); 2] = [
    (
        "fk_deployment_job_agent_deployment",
        "deployment_id",
        "deployment",
    ),
    (
        "fk_deployment_job_agent_job_agent",
        "job_agent_id",
        "job_agent",
    ),
];

/// Drops the foreign keys and the reverse index, on PostgreSQL only.
pub async fn set_aside<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    if conn.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    for (name, ..) in FOREIGN_KEYS {
        let sql = format!("ALTER TABLE deployment_job_agent DROP CONSTRAINT IF EXISTS {name}");
        conn.execute_unprepared(&sql).await?;
    }
    let sql = format!("DROP INDEX IF EXISTS {JOB_AGENT_ID_INDEX}");
    conn.execute_unprepared(&sql).await.map(|_| ())
}

/// Puts back whatever [`set_aside`] removed. Safe to run at any time.
pub async fn restore<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    if conn.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    for (name, column, parent) in FOREIGN_KEYS {
        if has_constraint(conn, name).await? {
            continue;
        }
        let add = format!(
            "ALTER TABLE deployment_job_agent ADD CONSTRAINT {name} FOREIGN KEY ({column}) \
             REFERENCES {parent} (id) ON DELETE CASCADE NOT VALID"
        );
        let orphans = format!(
            "DELETE FROM deployment_job_agent l \
             WHERE NOT EXISTS (SELECT 1 FROM {parent} p WHERE p.id = l.{column})"
        );
        let validate = format!("ALTER TABLE deployment_job_agent VALIDATE CONSTRAINT {name}");
        for sql in [add, orphans, validate] {
            conn.execute_unprepared(&sql).await?;
            crate::crash_point!("bulk load: constraint step");
        }
    }
    let sql = format!(
        "CREATE INDEX IF NOT EXISTS {JOB_AGENT_ID_INDEX} ON deployment_job_agent (job_agent_id)"
    );
    conn.execute_unprepared(&sql).await.map(|_| ())
}

async fn has_constraint<C: ConnectionTrait>(conn: &C, name: &str) -> Result<bool, DbErr> {
    let sql = "SELECT 1 FROM pg_constraint \
               WHERE conrelid = to_regclass('deployment_job_agent') AND conname = $1";
    let statement = Statement::from_sql_and_values(DbBackend::Postgres, sql, [name.into()]);
    Ok(conn.query_one_raw(statement).await?.is_some())
}
