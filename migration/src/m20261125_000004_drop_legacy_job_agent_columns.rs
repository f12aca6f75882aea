//! Drops `job_agents`, `job_agent_id` and `job_agent_config` from `deployment`.
//!
//! Nothing written to the legacy columns is lost: PostgreSQL locks `deployment` for the
//! step's short transaction while it catches up the last captured writes and drops the
//! columns (`backends::postgres::drop`); SQLite does it in one write transaction while it rebuilds the table
//! (`backends::sqlite::rebuild`); MariaDB, whose DDL commits as it goes and whose table locks
//! are node-local on a Galera cluster, first renames the columns (no session can write them
//! from then on), catches up in batches beside the application, then drops them
//! (`backends::mysql::retire`). Just before, the
//! columns' declarations are recorded ([`crate::legacy_columns`]), and `down` gives back
//! exactly those, filled from the links in batches.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DatabaseTransaction, DbBackend};

use crate::backends::sqlite::rebuild as sqlite_rebuild;
use crate::backends::{self, mysql::retire, postgres, sqlite};
use crate::backfill::{capture, drain_pending};
use crate::expand;
use crate::legacy_columns::{self, LegacyColumnDef};
use crate::locks::{TableLock, lock_in_order, run_step, with_lock_retries};
use crate::refill::{job_agents_from_links, job_agents_from_links_in};
use crate::tables::{DEPLOYMENT, JOB_AGENT, LEGACY_COLUMNS, PENDING_TABLE};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::crash_point!("m20261125_000004_drop_legacy_job_agent_columns: up starts");
        let conn = manager.get_connection();
        crate::replicas::check_settings(conn).await?;
        // Most captured writes are caught up batch by batch, writers still going, so the
        // part that keeps them out is left with the last few. (A rerun after MariaDB renamed
        // the columns finds no legacy column left to read here.)
        let capturing = manager.has_table(PENDING_TABLE).await?;
        let legacy = legacy_columns::any_present(manager, &LEGACY_COLUMNS).await?;
        if capturing && legacy {
            drain_pending(conn).await?;
        }
        match manager.get_database_backend() {
            DbBackend::Sqlite => {
                let first = async |txn: &_| {
                    legacy_columns::record(txn).await?;
                    capture::finish_in(&SchemaManager::new(txn)).await?;
                    expand::end_in(txn).await
                };
                sqlite_rebuild::drop_columns(conn, DEPLOYMENT, &LEGACY_COLUMNS, first).await
            }
            DbBackend::Postgres => postgres::drop::drop_legacy_columns(conn).await,
            _ => retire::retire_and_drop(manager, capturing, legacy).await,
        }
    }

    /// Gives the columns back as they were declared, without blocking the application for
    /// longer than a lock timeout: back nullable and unconstrained with the capture (an
    /// instant), filled from the links in batches, then constrained step by step. SQLite,
    /// which cannot alter a column, does it all in one rebuild.
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        crate::replicas::check_settings(conn).await?;
        let columns = legacy_columns::recorded(manager).await?;
        if manager.get_database_backend() == DbBackend::Sqlite {
            let redefined: Vec<(String, String)> = (columns.iter())
                .map(|c| (c.name.clone(), sqlite::column_definition(c)))
                .collect();
            let first = async |txn: &_| {
                add_columns_back(txn, &columns).await?;
                job_agents_from_links_in(txn).await
            };
            let last = async |txn: &_| expand::resume_in(txn).await;
            sqlite_rebuild::redefine_columns(conn, DEPLOYMENT, &redefined, first, last).await?;
            return legacy_columns::forget(conn).await;
        }
        let what = "adding the legacy columns back (locks deployment for an instant)";
        with_lock_retries(conn, what, Default::default(), |txn| {
            let columns = columns.clone();
            Box::pin(async move {
                let then = [TableLock::share_row_exclusive(JOB_AGENT)];
                lock_in_order(txn, TableLock::access_exclusive(DEPLOYMENT), &then).await?;
                add_columns_back(txn, &columns).await
            })
        })
        .await?;
        crate::crash_point!("drop down: the columns are back");
        // The legacy columns are live again: the expand phase again, from now on (a link
        // written while they fill reaches them by itself; one written before the sync is
        // back is read by the fill). The sync's own steps: several DDL statements in one
        // step starve beside a busy writer where each needs a gap of its own (MariaDB).
        expand::install(conn).await?;
        crate::crash_point!("drop down: the columns and the sync are back");
        job_agents_from_links(conn).await?;
        restore_constraints(conn, &columns).await?;
        legacy_columns::forget(conn).await
    }

    /// Each locking step runs in a transaction of its own, so a lock timeout rolls back only
    /// that step (see [`crate::locks`]).
    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }
}

/// Adds back, nullable and unconstrained, each legacy column that is missing.
async fn add_columns_back(
    txn: &DatabaseTransaction,
    columns: &[LegacyColumnDef],
) -> Result<(), DbErr> {
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
async fn restore_constraints<C>(conn: &C, columns: &[LegacyColumnDef]) -> Result<(), DbErr>
where
    C: ConnectionTrait + sea_orm_migration::sea_orm::TransactionTrait,
{
    let backend = backends::of(conn.get_database_backend());
    for column in columns {
        let what = format!("restoring the declaration of deployment.{}", column.name);
        for step in backend.restore_constraints(column) {
            run_step(conn, &what, &step).await?;
            crate::crash_point!("drop down: a constraint restored");
        }
    }
    Ok(())
}
