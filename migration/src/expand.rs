//! The expand phase: from the end of the backfill until the legacy columns are dropped, the
//! old application (which reads and writes `deployment.job_agents`, `job_agent_id` and
//! `job_agent_config`) and the new one (which reads and writes `deployment_job_agent`) run
//! side by side, and every write reaches the other shape in the writer's own transaction:
//!
//! - a legacy write (insert, or update of a column the rules read) replaces the
//!   deployment's links by the rules of [`crate::backfill::rules`] and records its rejects;
//! - a link write (insert, update, delete) rewrites the deployment's legacy columns in the
//!   shape `down` gives them (every link an entry `{"ref", "config"}` in agent id order,
//!   `job_agent_id` NULL, `job_agent_config` `{}`);
//! - neither writes back: each sets the sync guard while it writes the other side, and the
//!   other side's trigger does nothing while it is set. The migration's own writes (the
//!   backfill, its catch-up, the refill of `down`) set it too (`sync_guard::guarded`).
//!
//! The lifecycle, owned here and called by the migrations: [`begin`] at the end of the
//! backfill's `up`; [`install`] (or [`install_in`], inside a locked step) in the drop's
//! `down`, which re-enters the phase; [`end_in`] in the drop step's locked transaction,
//! which then needs no catch-up; [`end`] in the backfill's `down`, before its links go
//! (deleting them with the sync on would empty every deployment's legacy columns). The
//! triggers' SQL is each backend's (`Triggers::sync_triggers`).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::TransactionTrait;

use crate::backends::{self, SyncTarget, column_type};
use crate::backfill::{capture, catch_up_all};
use crate::tables::{DEPLOYMENT, JOB_AGENT, JOIN_TABLE, PENDING_TABLE};
use online_migration::context::Context;
use online_migration::locks::{TableLock, lock_in_order, with_lock_retries};

pub use crate::sync_guard::installed;

/// Installs the sync, stops the capture and catches up what it recorded while the backfill
/// ran. From the sync's installation on, a write reaches the other side by itself; one made
/// before it is in the capture and is caught up here. The (empty) pending table and, where
/// silencing left them, the capture's triggers go with the drop step. Safe to run again.
pub async fn begin(ctx: &Context, manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let conn = manager.get_connection();
    install(ctx, conn).await?;
    crate::fault::crash_point!("expand: sync installed");
    if manager.has_table(PENDING_TABLE).await? {
        // Silenced before the catch-up: a write after this is not recorded, it is synced.
        capture::silence(ctx, conn).await?;
        crate::fault::crash_point!("expand: capture silenced");
        catch_up_all(ctx, conn).await?;
    }
    Ok(())
}

/// Installs the sync: each routine a step under the lock timeout, then the triggers in the
/// backend's steps (trigger DDL locks its table against writes for an instant; where DDL
/// commits as it goes, each statement is a step, and one that loses to the writers retries
/// only itself). Safe to run again.
pub async fn install<C>(ctx: &Context, conn: &C) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let target = target(conn).await?;
    let (triggers, routines) = sync_ddl(conn, &target).await?;
    let steps = (routines.into_iter().map(|sql| vec![sql])).chain(triggers);
    let steps: Vec<Vec<String>> = steps.collect();
    let count = steps.len();
    for (n, step) in steps.into_iter().enumerate() {
        let what = format!("installing the sync (step {} of {count})", n + 1);
        run_locked(ctx, conn, &what, step).await?;
    }
    Ok(())
}

/// [`install`] on a connection that already runs a locked step.
pub async fn install_in<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    let target = target(conn).await?;
    let (triggers, routines) = sync_ddl(conn, &target).await?;
    lock_both(conn).await?;
    for sql in routines.into_iter().chain(triggers.concat()) {
        conn.execute_unprepared(&sql).await?;
    }
    Ok(())
}

/// The sync's statements for this backend: its triggers as live trigger steps on both
/// tables (`Backend::live_trigger_steps`), and the rest (routines, scratch tables) on their
/// own, unless they are all in place already.
async fn sync_ddl<C: ConnectionTrait>(
    conn: &C,
    target: &SyncTarget,
) -> Result<(Vec<Vec<String>>, Vec<String>), DbErr> {
    let backend = backends::of(conn.get_database_backend());
    let (triggers, mut routines): (Vec<String>, Vec<String>) =
        (backend.sync_triggers(target).into_iter()).partition(|sql| backends::is_trigger_ddl(sql));
    if let Some(probe) = backend.sync_routines_in_place(target) {
        let row = conn.query_one_raw(probe).await?;
        if row.map(|r| r.try_get_by_index::<i64>(0)).transpose()? == Some(1) {
            routines.clear();
        }
    }
    let triggers = backend.live_trigger_steps(triggers);
    Ok((triggers, routines))
}

/// Removes the sync triggers, each statement a step under the lock timeout (as
/// [`install`]). Safe to run again.
pub async fn end<C>(ctx: &Context, conn: &C) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let target = target(conn).await?;
    let statements = backends::of(conn.get_database_backend()).remove_sync_triggers(&target);
    let count = statements.len();
    for (n, sql) in statements.into_iter().enumerate() {
        let what = format!("removing the sync triggers (step {} of {count})", n + 1);
        run_locked(ctx, conn, &what, vec![sql]).await?;
    }
    Ok(())
}

/// Statements on both tables, as one step under the lock timeout.
async fn run_locked<C>(
    ctx: &Context,
    conn: &C,
    what: &str,
    statements: Vec<String>,
) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    with_lock_retries(ctx, conn, what, Default::default(), |txn| {
        let statements = statements.clone();
        Box::pin(async move {
            lock_both(txn).await?;
            for sql in statements {
                txn.execute_unprepared(&sql).await?;
            }
            Ok(())
        })
    })
    .await
}

/// Ends the phase on a connection that already runs the drop step's locked transaction.
pub async fn end_in<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    let target = target(conn).await?;
    remove_with(conn, &target).await
}

async fn remove_with<C: ConnectionTrait>(conn: &C, target: &SyncTarget) -> Result<(), DbErr> {
    for sql in backends::of(conn.get_database_backend()).remove_sync_triggers(target) {
        conn.execute_unprepared(&sql).await?;
    }
    Ok(())
}

/// Both tables against writes (what trigger DDL takes anyway), `deployment` first.
async fn lock_both<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    let then = [TableLock::share_row_exclusive(JOIN_TABLE)];
    lock_in_order(conn, TableLock::share_row_exclusive(DEPLOYMENT), &then).await
}

/// Where the tables are and how they are declared.
async fn target<C: ConnectionTrait>(conn: &C) -> Result<SyncTarget, DbErr> {
    let backend = backends::of(conn.get_database_backend());
    let schema = match backend.current_schema() {
        Some(query) => match conn.query_one_raw(query).await? {
            Some(row) => row.try_get_by_index::<String>(0)?,
            None => String::new(),
        },
        None => String::new(),
    };
    Ok(SyncTarget {
        schema,
        deployment_id_type: column_type(conn, DEPLOYMENT, "id").await?,
        job_agent_id_type: column_type(conn, JOB_AGENT, "id").await?,
        deployment_workspace_id_type: column_type(conn, DEPLOYMENT, "workspace_id").await?,
        legacy_job_agent_id_type: column_type(conn, DEPLOYMENT, "job_agent_id").await?,
        job_agent_workspace_id_type: column_type(conn, JOB_AGENT, "workspace_id").await?,
        job_agents_type: column_type(conn, DEPLOYMENT, "job_agents").await?,
        job_agent_config_type: column_type(conn, DEPLOYMENT, "job_agent_config").await?,
    })
}
