//! Change capture for live databases.
//!
//! Before the backfill reads its first batch, triggers on `deployment` start recording the id
//! of every row inserted, or updated in a column the rules read, into
//! `deployment_job_agent_backfill_pending`. The drop migration then blocks writers, backfills
//! those ids again ([`super::catch_up`]) and drops the legacy columns in the same critical
//! section, so no legacy write is lost: one committed before the triggers existed is seen by
//! the backfill's scan, one committed after them is in the pending table. Deleted deployments
//! need nothing: their links go by `ON DELETE CASCADE`.
//!
//! Every statement here is fixed text: the only names in it are ours.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, TransactionTrait};

use crate::dialect::{column_type, read_id, select_id};
use crate::locks::{TableLock, lock_in_order, with_lock_retries};
use crate::tables::BackfillPending;

use super::ids::StoredId;

/// Creates the pending table and the triggers that fill it, as one step under the lock
/// timeout (trigger DDL locks `deployment`). Safe to run again.
pub async fn install<C>(conn: &C) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let what = "installing the capture triggers on deployment";
    with_lock_retries(conn, what, Default::default(), |txn| {
        Box::pin(install_in(txn))
    })
    .await
}

/// Drops the triggers and the pending table, as one step under the lock timeout. Safe to
/// run again.
pub async fn remove<C>(conn: &C) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let what = "removing the capture triggers from deployment";
    with_lock_retries(conn, what, Default::default(), |txn| {
        Box::pin(remove_in(txn))
    })
    .await
}

/// [`install`] on a connection that already runs a locked step.
pub async fn install_in<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    lock_in_order(conn, TableLock::access_exclusive("deployment"), &[]).await?;
    let id_type = column_type(conn, "deployment", "id").await?;
    let table = Table::create()
        .table(BackfillPending::Table)
        .if_not_exists()
        .col(
            ColumnDef::new_with_type(BackfillPending::DeploymentId, ColumnType::custom(id_type))
                .not_null()
                .primary_key(),
        )
        .to_owned();
    conn.execute(&table).await?;
    for sql in install_triggers(conn.get_database_backend()) {
        conn.execute_unprepared(sql).await?;
        crate::crash_point!("capture: trigger step");
    }
    Ok(())
}

/// [`remove`] on a connection that already runs a locked step.
pub async fn remove_in<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    lock_in_order(conn, TableLock::access_exclusive("deployment"), &[]).await?;
    for sql in remove_triggers(conn.get_database_backend()) {
        conn.execute_unprepared(sql).await?;
    }
    let drop = Table::drop()
        .table(BackfillPending::Table)
        .if_exists()
        .to_owned();
    conn.execute(&drop).await.map(|_| ())
}

/// Up to `limit` ids of deployments written since the triggers were installed.
pub async fn pending<C: ConnectionTrait>(conn: &C, limit: u64) -> Result<Vec<StoredId>, DbErr> {
    let backend = conn.get_database_backend();
    let mut query = Query::select();
    query
        .exprs(select_id(
            backend,
            BackfillPending::Table,
            BackfillPending::DeploymentId,
        ))
        .from(BackfillPending::Table)
        .limit(limit);
    let mut ids = vec![];
    for row in conn.query_all(&query).await? {
        ids.extend(read_id(backend, &row, &mut 0)?);
    }
    Ok(ids)
}

/// How many deployments are marked pending.
pub async fn count_pending<C: ConnectionTrait>(conn: &C) -> Result<u64, DbErr> {
    super::store::count_rows(conn, BackfillPending::Table).await
}

/// Marks these deployments as caught up.
pub async fn forget<C: ConnectionTrait>(conn: &C, ids: &[StoredId]) -> Result<(), DbErr> {
    let delete = Query::delete()
        .from_table(BackfillPending::Table)
        .and_where(
            Expr::col(BackfillPending::DeploymentId).is_in(ids.iter().map(StoredId::to_value)),
        )
        .to_owned();
    conn.execute(&delete).await.map(|_| ())
}

// An update is recorded only when it changes a column the rules read (`id`, `workspace_id`
// and the three legacy columns): the live application's other writes (renames, selectors)
// then cost the drop migration's critical section nothing. Values are compared as text or
// bytes, so a change of case in a JSON string counts whatever the column's type or collation.
fn install_triggers(backend: DbBackend) -> &'static [&'static str] {
    match backend {
        DbBackend::Postgres => &[
            // SECURITY DEFINER: the application's role may write `deployment` without any
            // privilege on the pending table. The table is named with its schema and the
            // search path is fixed, so no object of the caller's can stand in for ours.
            "DO $do$ BEGIN EXECUTE format($sql$ \
               CREATE OR REPLACE FUNCTION deployment_job_agent_backfill_capture() \
               RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER \
               SET search_path = pg_catalog, pg_temp AS $fn$ BEGIN \
                 INSERT INTO %I.deployment_job_agent_backfill_pending (deployment_id) \
                 VALUES (NEW.id) ON CONFLICT DO NOTHING; \
                 RETURN NULL; \
               END $fn$ $sql$, current_schema()); END $do$",
            "DROP TRIGGER IF EXISTS deployment_job_agent_backfill_capture ON deployment",
            "CREATE TRIGGER deployment_job_agent_backfill_capture AFTER INSERT \
             ON deployment FOR EACH ROW EXECUTE FUNCTION deployment_job_agent_backfill_capture()",
            "DROP TRIGGER IF EXISTS deployment_job_agent_backfill_capture_update ON deployment",
            "CREATE TRIGGER deployment_job_agent_backfill_capture_update AFTER UPDATE \
             ON deployment FOR EACH ROW WHEN ( \
               (CAST(OLD.id AS text), CAST(OLD.workspace_id AS text), \
                CAST(OLD.job_agents AS text), CAST(OLD.job_agent_id AS text), \
                CAST(OLD.job_agent_config AS text)) \
               IS DISTINCT FROM \
               (CAST(NEW.id AS text), CAST(NEW.workspace_id AS text), \
                CAST(NEW.job_agents AS text), CAST(NEW.job_agent_id AS text), \
                CAST(NEW.job_agent_config AS text))) \
             EXECUTE FUNCTION deployment_job_agent_backfill_capture()",
        ],
        DbBackend::Sqlite => &[
            "CREATE TRIGGER IF NOT EXISTS deployment_job_agent_backfill_capture_insert \
             AFTER INSERT ON deployment BEGIN \
               INSERT OR IGNORE INTO deployment_job_agent_backfill_pending (deployment_id) \
               VALUES (NEW.id); \
             END",
            "CREATE TRIGGER IF NOT EXISTS deployment_job_agent_backfill_capture_update \
             AFTER UPDATE ON deployment \
             WHEN OLD.id IS NOT NEW.id COLLATE BINARY \
               OR OLD.workspace_id IS NOT NEW.workspace_id COLLATE BINARY \
               OR OLD.job_agents IS NOT NEW.job_agents COLLATE BINARY \
               OR OLD.job_agent_id IS NOT NEW.job_agent_id COLLATE BINARY \
               OR OLD.job_agent_config IS NOT NEW.job_agent_config COLLATE BINARY \
             BEGIN \
               INSERT OR IGNORE INTO deployment_job_agent_backfill_pending (deployment_id) \
               VALUES (NEW.id); \
             END",
        ],
        _ => &[
            "CREATE TRIGGER IF NOT EXISTS deployment_job_agent_backfill_capture_insert \
             AFTER INSERT ON deployment FOR EACH ROW \
             INSERT IGNORE INTO deployment_job_agent_backfill_pending (deployment_id) VALUES (NEW.id)",
            "CREATE TRIGGER IF NOT EXISTS deployment_job_agent_backfill_capture_update \
             AFTER UPDATE ON deployment FOR EACH ROW \
             IF NOT (CAST(OLD.id AS BINARY) <=> CAST(NEW.id AS BINARY) \
               AND CAST(OLD.workspace_id AS BINARY) <=> CAST(NEW.workspace_id AS BINARY) \
               AND CAST(OLD.job_agents AS BINARY) <=> CAST(NEW.job_agents AS BINARY) \
               AND CAST(OLD.job_agent_id AS BINARY) <=> CAST(NEW.job_agent_id AS BINARY) \
               AND CAST(OLD.job_agent_config AS BINARY) <=> CAST(NEW.job_agent_config AS BINARY)) \
             THEN INSERT IGNORE INTO deployment_job_agent_backfill_pending (deployment_id) \
               VALUES (NEW.id); \
             END IF",
        ],
    }
}

fn remove_triggers(backend: DbBackend) -> &'static [&'static str] {
    match backend {
        DbBackend::Postgres => &[
            "DROP TRIGGER IF EXISTS deployment_job_agent_backfill_capture ON deployment",
            "DROP TRIGGER IF EXISTS deployment_job_agent_backfill_capture_update ON deployment",
            "DROP FUNCTION IF EXISTS deployment_job_agent_backfill_capture()",
        ],
        _ => &[
            "DROP TRIGGER IF EXISTS deployment_job_agent_backfill_capture_insert",
            "DROP TRIGGER IF EXISTS deployment_job_agent_backfill_capture_update",
        ],
    }
}
