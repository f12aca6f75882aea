//! Change capture for live databases.
//!
//! Before the backfill reads its first batch, triggers on `deployment` start recording the id
//! of every row inserted, or updated in a column the rules read, into
//! `deployment_job_agent_backfill_pending`. The drop migration backfills those ids again,
//! batch by batch with writers going on ([`super::drain_pending`]), then the last few in the
//! critical section that drops the legacy columns ([`super::catch_up`]), so no legacy write is
//! lost: one committed before the triggers existed is seen by the backfill's scan, one
//! committed after them is in the pending table. Deleted deployments need nothing: their
//! links go by `ON DELETE CASCADE`.
//!
//! The triggers' SQL is each backend's (`Backend::capture_triggers`); this module owns when
//! they are installed and removed, and the pending table.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::TransactionTrait;

use crate::backends;
use crate::backends::{column_type, read_id, select_id};
use crate::tables::{BackfillPending, DEPLOYMENT, PENDING_TABLE};
use online_migration::context::Context;
use online_migration::locks::{TableLock, lock_in_order, with_lock_retries};

use crate::ids::StoredId;

/// Creates the pending table and the triggers that fill it, as the backend's steps under
/// the lock timeout (trigger DDL locks `deployment` against writes; the first step creates
/// the table too). Safe to run again.
pub async fn install<C>(ctx: &Context, conn: &C) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    install_as(ctx, conn, "installing the capture triggers on deployment").await
}

/// [`install`], its steps named `what` in the log and in an error (the step of the
/// migration it is part of).
pub async fn install_as<C>(ctx: &Context, conn: &C, what: &str) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let backend = backends::of(conn.get_database_backend());
    let steps = backend.live_trigger_steps(backend.capture_triggers());
    for (n, step) in steps.into_iter().enumerate() {
        with_lock_retries(ctx, conn, what, Default::default(), |txn| {
            let step = step.clone();
            Box::pin(async move {
                // What `CREATE TRIGGER` takes anyway: writers wait, readers go on (on a hot
                // standby too, which replays only `ACCESS EXCLUSIVE`).
                lock_in_order(txn, TableLock::share_row_exclusive(DEPLOYMENT), &[]).await?;
                if n == 0 {
                    create_pending_table(txn).await?;
                }
                for sql in step {
                    txn.execute_unprepared(&sql).await?;
                    crate::fault::crash_point!("capture: trigger step");
                }
                Ok(())
            })
        })
        .await?;
    }
    Ok(())
}

/// Drops the triggers and the pending table, as one step under the lock timeout. Safe to
/// run again.
pub async fn remove<C>(ctx: &Context, conn: &C) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let what = "removing the capture triggers from deployment";
    with_lock_retries(ctx, conn, what, Default::default(), |txn| {
        Box::pin(remove_in(txn))
    })
    .await
}

/// Stops recording writes, keeping what was recorded (the drop step, or `down`, removes
/// the rest): where the backend can, without locking `deployment`.
pub async fn silence<C>(ctx: &Context, conn: &C) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let what = "stopping the capture on deployment";
    let silence = backends::of(conn.get_database_backend()).silence_capture();
    with_lock_retries(ctx, conn, what, Default::default(), |txn| {
        let silence = silence.clone();
        Box::pin(async move {
            match silence {
                Some(statements) => {
                    for sql in statements {
                        txn.execute_unprepared(&sql).await?;
                    }
                    Ok(())
                }
                None => stop_in(txn).await,
            }
        })
    })
    .await
}

async fn create_pending_table<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    let id_type = column_type(conn, DEPLOYMENT, "id").await?;
    let table = Table::create()
        .table(BackfillPending::Table)
        .if_not_exists()
        .col(
            ColumnDef::new_with_type(BackfillPending::DeploymentId, ColumnType::custom(id_type))
                .not_null()
                .primary_key(),
        )
        .to_owned();
    conn.execute(&table).await.map(|_| ())
}

/// Widens the capture to every update, reading no legacy column (see
/// `Backend::capture_every_update`), on a connection that already runs a locked step.
pub async fn capture_every_update_in<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    let backend = backends::of(conn.get_database_backend());
    for sql in (backend.live_trigger_steps(backend.capture_every_update())).concat() {
        conn.execute_unprepared(&sql).await?;
    }
    Ok(())
}

/// Drops the triggers, keeping what they recorded, on a connection that already runs a
/// locked step.
pub async fn stop_in<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    lock_in_order(conn, TableLock::access_exclusive(DEPLOYMENT), &[]).await?;
    for sql in backends::of(conn.get_database_backend()).remove_capture_triggers() {
        conn.execute_unprepared(&sql).await?;
    }
    Ok(())
}

/// Drops the pending table (once [`stop_in`] has run), on a connection that already runs a
/// locked step.
async fn drop_pending_table_in<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    let drop = Table::drop()
        .table(BackfillPending::Table)
        .if_exists()
        .to_owned();
    conn.execute(&drop).await.map(|_| ())
}

/// Empties the pending table, keeping it (MariaDB's drop step: see there why).
pub async fn empty_pending_table_in(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    if !manager.has_table(PENDING_TABLE).await? {
        return Ok(());
    }
    let delete = Query::delete()
        .from_table(BackfillPending::Table)
        .to_owned();
    manager.get_connection().execute(&delete).await.map(|_| ())
}

/// Applies the writes captured since the backfill, then stops capturing, on a connection
/// that already keeps writers out (the drop step). Without the pending table there is
/// nothing to do: [`install`] creates it before its triggers, [`remove`] drops it after.
pub async fn finish_in(ctx: &Context, manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    if !manager.has_table(PENDING_TABLE).await? {
        return Ok(());
    }
    super::catch_up(ctx, manager.get_connection()).await?;
    remove_in(manager.get_connection()).await
}

/// [`remove`] on a connection that already runs a locked step.
async fn remove_in<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    stop_in(conn).await?;
    drop_pending_table_in(conn).await
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
    online_migration::table_rows::count(conn, BackfillPending::Table).await
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
