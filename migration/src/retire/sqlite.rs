//! SQLite's drop step and its way back: one rebuild of `deployment` each
//! (`backends::sqlite::rebuild`), in one write transaction that also records the columns'
//! declarations and ends the capture and the sync (or, on the way back, fills the columns
//! from the links and resumes the sync).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DatabaseTransaction, TransactionTrait};

use super::add_columns_back;
use crate::backends::sqlite::{self, rebuild};
use crate::backfill::capture;
use crate::expand;
use crate::legacy_columns::{self, ColumnDecl};
use crate::refill::job_agents_from_links_in;
use crate::tables::{DEPLOYMENT, LEGACY_COLUMNS};
use online_migration::context::Context;

/// Rebuilds `deployment` without the legacy columns.
pub(super) async fn drop_columns<C>(ctx: &Context, conn: &C) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait<Transaction = DatabaseTransaction>,
{
    let first = async |txn: &DatabaseTransaction| {
        legacy_columns::record(txn).await?;
        capture::finish_in(ctx, &SchemaManager::new(txn)).await?;
        expand::end_in(txn).await
    };
    rebuild::drop_columns(conn, DEPLOYMENT, &LEGACY_COLUMNS, first).await
}

/// Rebuilds `deployment` with `columns` as they were declared, filled from the links.
pub(super) async fn restore_columns<C>(
    ctx: &Context,
    conn: &C,
    columns: &[ColumnDecl],
) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait<Transaction = DatabaseTransaction>,
{
    let redefined: Vec<(String, String)> = (columns.iter())
        .map(|c| (c.name.clone(), sqlite::column_definition(c)))
        .collect();
    let first = async |txn: &DatabaseTransaction| {
        add_columns_back(txn, columns).await?;
        job_agents_from_links_in(ctx, txn).await
    };
    let last = async |txn: &DatabaseTransaction| expand::install_in(txn).await;
    rebuild::redefine_columns(conn, DEPLOYMENT, &redefined, first, last).await
}
