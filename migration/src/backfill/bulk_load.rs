//! Bulk-load mode: the join table's foreign keys and reverse index are checked and built
//! once over the loaded table instead of row by row while the backfill writes.
//!
//! Checking two foreign keys row by row costs PostgreSQL about three times the insert itself;
//! validating them once over the finished table is a single join. PostgreSQL's join table is
//! created without them (see the second migration), so nothing has to be dropped: dropping a
//! foreign key would lock its parent `ACCESS EXCLUSIVE`, which hot standbys replay behind
//! their readers. Putting them on is safe on a live database: each key is added `NOT VALID`
//! (from then on new rows are checked and deletes cascade), links whose deployment or agent
//! was deleted meanwhile are removed, and only then is the key validated, which does not
//! block writers. A crash in between leaves the keys missing until the next run of the
//! backfill (or its `down`) adds them. SQLite stops checking on the loading connection and
//! checks every link afterwards. MariaDB keeps its keys throughout.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::TransactionTrait;

use crate::backends;
use crate::backends::ConstraintStep;
use crate::tables::{
    DEPLOYMENT, DEPLOYMENT_FOREIGN_KEY, JOB_AGENT, JOB_AGENT_FOREIGN_KEY, job_agent_id_index,
};
use online_migration::context::Context;
use online_migration::locks::{run_step, with_lock_retries};

/// The join table's foreign keys: (name, column, parent table).
const FOREIGN_KEYS: [(&str, &str, &str); 2] = [
    (DEPLOYMENT_FOREIGN_KEY, "deployment_id", DEPLOYMENT),
    (JOB_AGENT_FOREIGN_KEY, "job_agent_id", JOB_AGENT),
];

/// Makes the loading connection skip what the load goes without (SQLite: key checks and the
/// reverse index). PostgreSQL needs nothing: its join table gets its keys and index only in
/// [`restore`] (where a rerun finds them, the load checks them row by row rather than lock a
/// parent). With a maximum replica lag set, though, the reverse index is built first: built
/// after the load, all its WAL would reach the replicas in one burst no pause can spread.
pub async fn set_aside<C>(ctx: &Context, conn: &C) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    for sql in backends::of(conn.get_database_backend()).load_without_checks() {
        conn.execute_unprepared(&sql).await?;
    }
    if ctx.settings.max_replica_lag.is_some() {
        create_job_agent_id_index(ctx, conn).await?;
    }
    Ok(())
}

/// Gives the loaded join table what the load went without: its keys (checked once over the
/// whole table) and its reverse index (built in one pass). Safe to run at any time.
pub async fn restore<C>(ctx: &Context, conn: &C) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let backend = backends::of(conn.get_database_backend());
    for (name, column, parent) in FOREIGN_KEYS {
        let Some(has_key) = backend.join_table_has_key(name) else {
            continue;
        };
        if conn.query_one_raw(has_key).await?.is_some() {
            continue;
        }
        let what = format!("putting back the foreign key to {parent}");
        for step in backend.join_table_key_steps(name, column, parent) {
            run_step(ctx, conn, &what, &step).await?;
            crate::fault::crash_point!("bulk load: constraint step");
        }
    }
    for sql in backend.check_keys_again() {
        conn.execute_unprepared(&sql).await?;
    }
    if backend.builds_index_after_load() {
        create_job_agent_id_index(ctx, conn).await?;
    }
    let Some(check) = backend.links_breaking_keys() else {
        return Ok(());
    };
    let row = conn.query_one_raw(check).await?;
    let violations: i64 = row.map(|r| r.try_get_by_index(0)).transpose()?.unwrap_or(0);
    match violations {
        0 => Ok(()),
        n => Err(DbErr::Migration(format!(
            "{n} links point to a missing deployment or job agent after the backfill"
        ))),
    }
}

/// Builds the reverse index in one pass over the loaded table, unless it is there: a step
/// of its own (a bounded wait for its lock, no statement timeout on the build).
async fn create_job_agent_id_index<C>(ctx: &Context, conn: &C) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let what = "building the join table's reverse index";
    let index = job_agent_id_index().if_not_exists().to_owned();
    with_lock_retries(ctx, conn, what, Default::default(), |txn| {
        let index = index.clone();
        Box::pin(async move { txn.execute(&index).await.map(|_| ()) })
    })
    .await
}

/// Fresh planner statistics for the join table. The backfill just wrote every row of it, and
/// until the server's own sampling notices, PostgreSQL plans from an empty table's figures:
/// a page's links (100 ids, one index probe each) were then read by a full scan, 300 times
/// slower. MariaDB re-samples on its own; SQLite keeps none unless asked.
pub async fn refresh_statistics<C>(ctx: &Context, conn: &C) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let step = ConstraintStep {
        statements: backends::of(conn.get_database_backend()).refresh_join_table_statistics(),
        ..Default::default()
    };
    if step.statements.is_empty() {
        return Ok(());
    }
    run_step(ctx, conn, "refreshing the join table's statistics", &step).await
}
