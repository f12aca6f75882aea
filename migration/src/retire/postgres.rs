//! PostgreSQL's drop step: one short transaction that holds `deployment` under `ACCESS
//! EXCLUSIVE` while it records the legacy columns' declarations, applies the last captured
//! writes, removes the sync and drops the columns. Readers and writers of `deployment` wait
//! for it (milliseconds plus the last few deployments' catch-up); nothing can land unseen.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DatabaseTransaction, TransactionTrait};

use crate::backfill::capture;
use crate::expand;
use crate::legacy_columns;
use crate::tables::{DEPLOYMENT, JOB_AGENT, JOIN_TABLE, LEGACY_COLUMNS};
use online_migration::context::Context;
use online_migration::locks::{TableLock, lock_in_order, with_lock_retries};

/// The drop step, retried as a whole while it loses to the application's locks.
pub(super) async fn drop_legacy_columns<C>(ctx: &Context, conn: &C) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait<Transaction = DatabaseTransaction>,
{
    let what = "dropping the legacy columns (locks deployment: reads and writes wait)";
    with_lock_retries(ctx, conn, what, Default::default(), |txn| {
        let ctx = ctx.clone();
        Box::pin(async move { drop_under_lock(&ctx, txn).await })
    })
    .await
}

/// Takes `deployment` first, waiting at most the lock timeout while holding nothing, then
/// everything else the step touches at once or not at all (`NOWAIT`): the step never waits
/// while holding a lock, so no session can deadlock with it.
async fn drop_under_lock(ctx: &Context, txn: &DatabaseTransaction) -> Result<(), DbErr> {
    let then = [
        TableLock::exclusive(JOIN_TABLE),
        TableLock::access_exclusive(JOB_AGENT),
    ];
    lock_in_order(txn, TableLock::access_exclusive(DEPLOYMENT), &then).await?;
    crate::fault::crash_point!("drop: deployment locked");
    legacy_columns::record(txn).await?;
    let manager = SchemaManager::new(txn);
    capture::finish_in(ctx, &manager).await?;
    expand::end_in(txn).await?;
    crate::fault::crash_point!("drop: caught up");
    legacy_columns::drop_present(&manager, &LEGACY_COLUMNS).await
}
