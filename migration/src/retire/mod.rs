//! Retiring the legacy columns of `deployment`, and giving them back.
//!
//! Nothing written to the legacy columns is lost: PostgreSQL locks `deployment` for the
//! step's short transaction while it catches up the last captured writes and drops the
//! columns ([`postgres`]); SQLite does it in one write transaction while it rebuilds the
//! table ([`sqlite`], over `backends::sqlite::rebuild`); MariaDB, whose DDL commits as it goes
//! and whose table locks are node-local on a Galera cluster, first renames the columns (no
//! session can write them from then on), catches up in batches beside the application, then
//! drops them ([`mysql`]). Just before, the columns' declarations are recorded
//! ([`crate::legacy_columns`]), and [`restore`] gives back exactly those, filled from the
//! links in batches.

mod mysql;
mod postgres;
mod sqlite;

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DatabaseTransaction, DbBackend, TransactionTrait};

use crate::backends;
use crate::backfill::drain_pending;
use crate::expand;
use crate::legacy_columns::{self, ColumnDecl};
use crate::refill::job_agents_from_links;
use crate::tables::{DEPLOYMENT, JOB_AGENT, LEGACY_COLUMNS, PENDING_TABLE};
use online_migration::context::Context;
use online_migration::locks::{TableLock, lock_in_order, run_step, with_lock_retries};

/// Drops the legacy columns, each backend its own way (see the module's text). Safe to run
/// again after a failure anywhere.
pub(crate) async fn drop_columns(ctx: &Context, manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let conn = manager.get_connection();
    // Most captured writes are caught up batch by batch, writers still going, so the part
    // that keeps them out is left with the last few. (A rerun after MariaDB renamed the
    // columns finds no legacy column left to read here.)
    let capturing = manager.has_table(PENDING_TABLE).await?;
    let legacy = legacy_columns::any_present(manager, &LEGACY_COLUMNS).await?;
    if capturing && legacy {
        drain_pending(ctx, conn).await?;
    }
    match manager.get_database_backend() {
        DbBackend::Sqlite => sqlite::drop_columns(ctx, conn).await,
        DbBackend::Postgres => postgres::drop_legacy_columns(ctx, conn).await,
        _ => mysql::retire_and_drop(ctx, manager, capturing, legacy).await,
    }
}

/// Gives the columns back as they were declared, without blocking the application for
/// longer than a lock timeout: back nullable and unconstrained with the capture (an
/// instant), filled from the links in batches, then constrained step by step. SQLite,
/// which cannot alter a column, does it all in one rebuild.
pub(crate) async fn restore(ctx: &Context, manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let conn = manager.get_connection();
    let columns = legacy_columns::recorded(manager).await?;
    if manager.get_database_backend() == DbBackend::Sqlite {
        sqlite::restore_columns(ctx, conn, &columns).await?;
        return legacy_columns::forget(conn).await;
    }
    let what = "adding the legacy columns back (locks deployment for an instant)";
    with_lock_retries(ctx, conn, what, Default::default(), |txn| {
        let columns = columns.clone();
        Box::pin(async move {
            let then = [TableLock::share_row_exclusive(JOB_AGENT)];
            lock_in_order(txn, TableLock::access_exclusive(DEPLOYMENT), &then).await?;
            add_columns_back(txn, &columns).await
        })
    })
    .await?;
    crate::fault::crash_point!("drop down: the columns are back");
    // The legacy columns are live again: the expand phase again, from now on (a link
    // written while they fill reaches them by itself; one written before the sync is
    // back is read by the fill). The sync's own steps: several DDL statements in one
    // step starve beside a busy writer where each needs a gap of its own (MariaDB).
    expand::install(ctx, conn).await?;
    crate::fault::crash_point!("drop down: the columns and the sync are back");
    job_agents_from_links(ctx, conn).await?;
    restore_constraints(ctx, conn, &columns).await?;
    legacy_columns::forget(conn).await
}

/// Adds back, nullable and unconstrained, each legacy column that is missing.
async fn add_columns_back(txn: &DatabaseTransaction, columns: &[ColumnDecl]) -> Result<(), DbErr> {
    let manager = SchemaManager::new(txn);
    let backend = backends::of(manager.get_database_backend());
    for column in columns {
        if manager.has_column(DEPLOYMENT, &column.name).await? {
            continue;
        }
        for sql in backend.add_legacy_column(column) {
            txn.execute_unprepared(&sql).await?;
        }
    }
    Ok(())
}

/// Defaults, `NOT NULL` and checked foreign keys, one short locking step each.
async fn restore_constraints<C>(
    ctx: &Context,
    conn: &C,
    columns: &[ColumnDecl],
) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let backend = backends::of(conn.get_database_backend());
    for column in columns {
        let what = format!("restoring the declaration of deployment.{}", column.name);
        for step in backend.restore_constraints(column) {
            run_step(ctx, conn, &what, &step).await?;
            crate::fault::crash_point!("drop down: a constraint restored");
        }
    }
    Ok(())
}
