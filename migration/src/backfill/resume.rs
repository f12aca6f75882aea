//! Where the backfill stopped: the last deployment of its last committed batch, written in
//! that batch's own transaction. A rerun (after a crash, a stop, or a failure at the end of
//! the step, such as a key that could not be validated) goes on after it instead of walking
//! the whole table again. Skipping the walked part loses nothing: writes to those
//! deployments are captured from before the first batch and caught up before the expand
//! phase. A backfill that finishes forgets the record, and so does the step's `down`, first
//! thing: a record must never outlive the capture that makes skipping safe.

use sea_orm_migration::prelude::*;

use crate::backends::{column_type, read_id, select_id};
use crate::ids::StoredId;
use crate::tables::{BackfillProgress, DEPLOYMENT};

/// The one row's key.
const STEP: &str = "backfill";

/// The last deployment a committed batch of an unfinished backfill walked, if any (after
/// [`prepare`]).
pub async fn last_done<C: ConnectionTrait>(conn: &C) -> Result<Option<StoredId>, DbErr> {
    let backend = conn.get_database_backend();
    let query = Query::select()
        .exprs(select_id(
            backend,
            BackfillProgress::Table,
            BackfillProgress::LastDeploymentId,
        ))
        .from(BackfillProgress::Table)
        .and_where(Expr::col(BackfillProgress::Step).eq(STEP))
        .to_owned();
    match conn.query_one(&query).await? {
        Some(row) => read_id(backend, &row, &mut 0),
        None => Ok(None),
    }
}

/// Creates the record's table if missing; its id column has `deployment.id`'s type, so the
/// id is kept exactly as stored.
pub async fn prepare<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    let id_type = column_type(conn, DEPLOYMENT, "id").await?;
    let table = Table::create()
        .table(BackfillProgress::Table)
        .if_not_exists()
        .col(
            ColumnDef::new(BackfillProgress::Step)
                .string_len(32)
                .not_null()
                .primary_key(),
        )
        .col(ColumnDef::new_with_type(
            BackfillProgress::LastDeploymentId,
            ColumnType::custom(id_type),
        ))
        .to_owned();
    conn.execute(&table).await?;
    // Each batch says how far it got there too (a backfill run outside the migrator
    // finds no row to update).
    online_migration::phase::create_table(conn, &crate::tables::LEDGER).await
}

/// Records `last` as walked, in the transaction that commits its batch.
pub async fn record<C: ConnectionTrait>(txn: &C, last: &StoredId) -> Result<(), DbErr> {
    let upsert = Query::insert()
        .into_table(BackfillProgress::Table)
        .columns([BackfillProgress::Step, BackfillProgress::LastDeploymentId])
        .values_panic([STEP.into(), last.to_value().into()])
        .on_conflict(
            OnConflict::column(BackfillProgress::Step)
                .update_column(BackfillProgress::LastDeploymentId)
                .to_owned(),
        )
        .to_owned();
    txn.execute(&upsert).await.map(|_| ())
}

/// Forgets where the backfill stopped (the next one walks the whole table).
pub async fn forget<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    let drop = Table::drop()
        .table(BackfillProgress::Table)
        .if_exists()
        .to_owned();
    conn.execute(&drop).await.map(|_| ())
}
