//! MariaDB's drop step: retire the legacy columns, catch up, drop them.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DatabaseTransaction, DbBackend, Statement};

use crate::backfill::{capture, catch_up_retired};
use crate::expand;
use crate::legacy_columns;
use crate::tables::{DEPLOYMENT, Deployment, LEGACY_COLUMNS, RETIRED_LEGACY_COLUMNS};
use online_migration::context::Context;
use online_migration::locks::with_lock_retries;

/// MariaDB commits DDL statement by statement, and on a Galera cluster a node-local lock
/// (`LOCK TABLES`) would keep out only that node's writers. So the legacy columns are first
/// *retired*: renamed in one statement, after which no session anywhere in the cluster can
/// write them (a statement naming them fails, as it will once they are dropped). Every write
/// that landed before is pending by then; those are caught up in batches beside the
/// application, and then the retired columns go. Each step is idempotent, so a rerun after a
/// failure anywhere finishes the job. `capturing` and `legacy` say whether `up` found the
/// pending table and the legacy columns under their own names.
pub(super) async fn retire_and_drop(
    ctx: &Context,
    manager: &SchemaManager<'_>,
    capturing: bool,
    legacy: bool,
) -> Result<(), DbErr> {
    let conn = manager.get_connection();
    if legacy {
        // Before the foreign key goes; kept if a failed run recorded it already.
        legacy_columns::record(conn).await?;
        if capturing {
            // Every write is recorded from now on, by triggers that read no legacy column
            // (the capture, put back if an expand phase had stopped it, then widened); a sync,
            // if one is installed, goes after: it reads and writes the columns by name.
            let what = "dropping the legacy columns: capturing every write to deployment";
            capture::install_as(ctx, conn, what).await?;
            with_lock_retries(ctx, conn, what, Default::default(), |txn| {
                Box::pin(capture::capture_every_update_in(txn))
            })
            .await?;
            crate::fault::crash_point!("drop: capture widened");
        }
        // The sync filled the legacy columns of a deployment the new version inserts; from
        // now on (and under their retired names) their defaults do.
        let what = "dropping the legacy columns: defaults for the new version's inserts";
        with_lock_retries(ctx, conn, what, Default::default(), |txn| {
            Box::pin(async move { give_defaults(&SchemaManager::new(txn)).await })
        })
        .await?;
        expand::end(ctx, conn).await?;
        let what = "dropping the legacy columns, step 1: renaming them (writes that name them \
                    fail from now on)";
        with_lock_retries(ctx, conn, what, Default::default(), |txn| {
            Box::pin(retire(txn))
        })
        .await?;
    }
    if capturing {
        let what = "removing the capture triggers from deployment";
        with_lock_retries(ctx, conn, what, Default::default(), |txn| {
            Box::pin(capture::stop_in(txn))
        })
        .await?;
        // A run that stopped after the drop finds nothing left to read (nor pending).
        if legacy_columns::any_present(manager, &RETIRED_LEGACY_COLUMNS).await? {
            catch_up_retired(ctx, conn).await?;
        }
    }
    let what = "dropping the legacy columns, step 2: dropping the renamed columns";
    with_lock_retries(ctx, conn, what, Default::default(), |txn| {
        Box::pin(drop_retired(txn))
    })
    .await
}

/// Drops the foreign key of `job_agent_id` (MariaDB keeps a column that one uses), then
/// renames the legacy columns (the capture reads none of them by now, and the sync is gone).
async fn retire(txn: &DatabaseTransaction) -> Result<(), DbErr> {
    let manager = SchemaManager::new(txn);
    drop_foreign_keys(&manager, "job_agent_id").await?;
    crate::fault::crash_point!("drop: foreign keys dropped");
    let mut rename = Table::alter();
    rename.table(Deployment::Table);
    let mut any = false;
    for (live, retired) in LEGACY_COLUMNS.iter().zip(RETIRED_LEGACY_COLUMNS) {
        if manager.has_column(DEPLOYMENT, live).await? {
            rename.rename_column(Alias::new(*live), Alias::new(retired));
            any = true;
        }
    }
    if any {
        manager.alter_table(rename).await?;
    }
    Ok(())
}

/// `[]` and `{}`, what a deployment without agents has in the legacy shape: set instantly
/// (a default is table metadata), and recorded before, so `down` gives back the original.
async fn give_defaults(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let mut changes = vec![];
    for (column, empty) in [("job_agents", "[]"), ("job_agent_config", "{}")] {
        if manager.has_column(DEPLOYMENT, column).await? {
            changes.push(format!("ALTER COLUMN {column} SET DEFAULT '{empty}'"));
        }
    }
    if changes.is_empty() {
        return Ok(());
    }
    let sql = format!("ALTER TABLE {DEPLOYMENT} {}", changes.join(", "));
    manager
        .get_connection()
        .execute_unprepared(&sql)
        .await
        .map(|_| ())
}

async fn drop_retired(txn: &DatabaseTransaction) -> Result<(), DbErr> {
    let manager = SchemaManager::new(txn);
    legacy_columns::drop_present(&manager, &RETIRED_LEGACY_COLUMNS).await?;
    crate::fault::crash_point!("drop: retired columns dropped");
    // Emptied, not dropped: a statement the application prepared while the capture's
    // triggers wrote it opens it again at every execution (see `sync::remove`).
    capture::empty_pending_table_in(&manager).await
}

/// MariaDB will not drop a column that a foreign key uses, so its constraints go first.
async fn drop_foreign_keys(manager: &SchemaManager<'_>, column: &str) -> Result<(), DbErr> {
    let conn = manager.get_connection();
    let sql = "SELECT CONSTRAINT_NAME FROM information_schema.KEY_COLUMN_USAGE \
               WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? \
               AND COLUMN_NAME = ? AND REFERENCED_TABLE_NAME IS NOT NULL";
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::MySql,
            sql,
            [DEPLOYMENT.into(), column.into()],
        ))
        .await?;
    for row in rows {
        let name: String = row.try_get_by_index(0)?;
        let drop = Table::alter()
            .table(Deployment::Table)
            .drop_foreign_key(Alias::new(name))
            .to_owned();
        manager.alter_table(drop).await?;
    }
    Ok(())
}
