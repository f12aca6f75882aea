//! What the migration's own writes need to know of the expand phase's sync (see
//! [`crate::expand`]): whether it is installed, and how to write one side without the sync
//! copying the write to the other.

use sea_orm_migration::prelude::*;

use crate::backends;
use crate::tables::SYNC_FROM_LEGACY_UPDATE_TRIGGER;

/// Whether the sync is installed (an earlier run began the phase): a batch that writes
/// links must then lock the rows it reads, or a legacy write racing with it would have its
/// links replaced by the batch's older ones.
pub async fn installed<C: ConnectionTrait>(conn: &C) -> Result<bool, DbErr> {
    let backend = backends::of(conn.get_database_backend());
    let probe = backend.trigger_exists(SYNC_FROM_LEGACY_UPDATE_TRIGGER);
    Ok(conn.query_one_raw(probe).await?.is_some())
}

/// Runs `write` (the migration's own writes to one side) on a connection that runs a
/// transaction, with the sync guard set: the other side is left alone.
pub async fn guarded<C, T>(
    conn: &C,
    write: impl AsyncFnOnce() -> Result<T, DbErr>,
) -> Result<T, DbErr>
where
    C: ConnectionTrait,
{
    let backend = backends::of(conn.get_database_backend());
    for statement in backend.sync_guard() {
        conn.execute_raw(statement).await?;
    }
    let written = write().await?;
    for statement in backend.sync_unguard() {
        conn.execute_raw(statement).await?;
    }
    Ok(written)
}
