//! Lock retries: the one way the migrations take locks beside a live application.
//!
//! A statement that needs a strong lock (DDL on a table the application uses, `LOCK TABLE`,
//! a batch's row locks) queues behind whoever holds a conflicting lock, and on PostgreSQL and
//! MariaDB every later reader of the table queues behind *it*. One forgotten `idle in
//! transaction` session would turn the migration into an outage. So every such step runs
//! here:
//!
//! - in a transaction of its own whose lock waits end after [`Settings::lock_timeout`];
//! - when a wait ends (or the server picks the step as a deadlock or serialization victim),
//!   the transaction is rolled back, so the queue behind it drains, and after a backoff the
//!   whole step is tried again, until [`Settings::lock_retry_for`] has passed; a try
//!   refused without waiting (MariaDB's metadata locks, `NOWAIT`) kept no one waiting, so the next
//!   follows within milliseconds: a busy application leaves only short gaps between its
//!   transactions;
//! - while it retries it logs who is in the way; when it gives up it says so in one error,
//!   and a rerun of `up` finishes the job (every step is idempotent).
//!
//! GitLab's `with_lock_retries` and reshape's `lock_timeout` are the models.
//!
//! [`Settings::lock_timeout`]: crate::settings::Settings::lock_timeout
//! [`Settings::lock_retry_for`]: crate::settings::Settings::lock_retry_for

use std::future::Future;
use std::pin::{Pin, pin};
use std::time::{Duration, Instant};

use futures_util::future::{Either, select};
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{
    Statement, TransactionOptions, TransactionSession, TransactionTrait,
};

pub use crate::backends::TableLock;
use crate::backends::{self, Blocker, ConstraintStep, Probe};
use crate::context::Context;

/// The first pause between two tries; it doubles up to the lock timeout, so the
/// application gets the table at least half the time while the migration retries.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// How often a step that keeps losing says so (each try is logged at debug level).
const WARN_EVERY: Duration = Duration::from_secs(1);

/// The pause after a try that was refused without waiting: 5 to 20 ms, varied so that the
/// tries do not fall into step with a writer's rhythm.
fn quick_retry_pause(tries: u64) -> Duration {
    let spread = tries.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60; // 0..16
    Duration::from_millis(5 + spread)
}

/// What a step returns: a future borrowing only the step's transaction. Steps move (or
/// clone) whatever else they need into it, so a retry can run them again.
pub type StepFuture<'t, T> = Pin<Box<dyn Future<Output = Result<T, DbErr>> + Send + 't>>;

/// Runs `step` in a transaction of its own (begun with `options`) under the lock timeout, and
/// again from the start while it loses to contention, until the retry limit. The step must
/// be safe to run again after a rollback. `what` names the step in logs and errors.
///
/// `conn` must not be a transaction: the retry needs to roll back everything the step
/// locked, which a savepoint would not.
pub async fn with_lock_retries<C, T, F>(
    ctx: &Context,
    conn: &C,
    what: &str,
    options: TransactionOptions,
    step: F,
) -> Result<T, DbErr>
where
    C: ConnectionTrait + TransactionTrait,
    F: for<'t> Fn(&'t C::Transaction) -> StepFuture<'t, T>,
{
    let settings = &ctx.settings;
    let resets = ctx.session_reset(conn.get_database_backend());
    let db_backend = conn.get_database_backend();
    let started = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let mut last_warning: Option<Instant> = None;
    for tries in 1.. {
        let tried = Instant::now();
        let (result, holders) = attempt(conn, settings.lock_timeout, &resets, options, &step).await;
        let contention = match &result {
            Err(error) => backends::contention(db_backend, error),
            Ok(_) => None,
        };
        let Some(contention) = contention else {
            return result;
        };
        if let Err(error) = &result {
            tracing::debug!("{what}: try {tries} lost to contention: {error}");
        }
        // Refused at once (MariaDB's metadata locks, `NOWAIT`): the try kept no one waiting,
        // so the next comes soon, while the application's transactions leave a gap.
        let refused_at_once = tried.elapsed() < settings.lock_timeout / 10;
        let pause = match refused_at_once {
            true => quick_retry_pause(tries),
            false => backoff,
        };
        let waited = started.elapsed();
        if waited + pause > settings.lock_retry_for {
            let in_the_way = in_the_way(&holders);
            return Err(DbErr::Migration(format!(
                "gave up on {what} after {tries} tries in {:.1}s ({}), waiting for {in_the_way}: \
                 nothing of this step was kept; end that session, or run the command again later",
                waited.as_secs_f64(),
                contention.as_str(),
            )));
        }
        if last_warning.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            last_warning = Some(Instant::now());
            tracing::warn!(
                "{what}: {} (try {tries}, {:.1}s so far), waiting for {}; retrying in {} ms",
                contention.as_str(),
                waited.as_secs_f64(),
                in_the_way(&holders),
                pause.as_millis(),
            );
        }
        crate::runtime::sleep(pause).await;
        if !refused_at_once {
            backoff = (backoff * 2).min(settings.lock_timeout.max(FIRST_BACKOFF));
        }
    }
    unreachable!("the retry loop only ends by returning")
}

/// One try: the step's result, and who blocked it if it was still waiting near the timeout.
async fn attempt<C, T, F>(
    conn: &C,
    lock_timeout: Duration,
    resets: &[Statement],
    options: TransactionOptions,
    step: &F,
) -> (Result<T, DbErr>, Vec<Blocker>)
where
    C: ConnectionTrait + TransactionTrait,
    F: for<'t> Fn(&'t C::Transaction) -> StepFuture<'t, T>,
{
    let db_backend = conn.get_database_backend();
    let backend = backends::of(db_backend);
    let txn = match begin_bounded(conn, backend, lock_timeout, options).await {
        Ok(txn) => txn,
        Err(error) => return (Err(error), vec![]),
    };
    let session = session_id(&txn, backend).await;
    let (result, mut holders) = {
        let run = pin!(step(&txn));
        let watch = pin!(watch_blockers(conn, backend, session, lock_timeout));
        match select(run, watch).await {
            Either::Left((result, _)) => (result, vec![]),
            Either::Right((holders, run)) => (run.await, holders),
        }
    };
    let result = match result {
        Ok(value) => match unbound(&txn, backend, resets).await {
            Ok(()) => txn.commit().await.map(|_| value),
            Err(error) => Err(error),
        },
        Err(error) => {
            // Best effort: the error to report is the step's, and a connection whose
            // rollback fails is discarded by the pool.
            let _ = unbound(&txn, backend, resets).await;
            let _ = txn.rollback().await;
            Err(error)
        }
    };
    // A lock refused at once (MariaDB's metadata locks, `NOWAIT`) was never watched: ask
    // now who is in the way.
    let refused = result
        .as_ref()
        .is_err_and(|e| backends::contention(db_backend, e).is_some());
    if refused && holders.is_empty() {
        holders = blockers(conn, backend, session).await;
    }
    (result, holders)
}

async fn begin_bounded<C>(
    conn: &C,
    backend: &dyn Probe,
    lock_timeout: Duration,
    options: TransactionOptions,
) -> Result<C::Transaction, DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let txn = conn.begin_with_options(options).await?;
    for statement in backend.bound_lock_waits(lock_timeout) {
        txn.execute_raw(statement).await?;
    }
    Ok(txn)
}

/// The lock waits unbound again, and the session state the caller's steps may set reset
/// ([`Context::with_session_reset`]), before the connection goes back to the pool.
async fn unbound<C: ConnectionTrait>(
    txn: &C,
    backend: &dyn Probe,
    resets: &[Statement],
) -> Result<(), DbErr> {
    for statement in backend
        .unbound_lock_waits()
        .into_iter()
        .chain(resets.to_vec())
    {
        txn.execute_raw(statement).await?;
    }
    Ok(())
}

async fn session_id<C: ConnectionTrait>(txn: &C, backend: &dyn Probe) -> Option<i64> {
    let row = txn.query_one_raw(backend.session_id()?).await.ok()??;
    row.try_get_by_index(0).ok()
}

/// Shortly before the lock timeout, asks (on another connection) who blocks `session`.
/// Never finishes where no one can ask.
async fn watch_blockers<C: ConnectionTrait>(
    conn: &C,
    backend: &dyn Probe,
    session: Option<i64>,
    lock_timeout: Duration,
) -> Vec<Blocker> {
    let Some(session) = session else {
        return std::future::pending().await;
    };
    crate::runtime::sleep(lock_timeout.mul_f64(0.8)).await;
    blockers(conn, backend, Some(session)).await
}

/// The sessions in the way of `session`, as far as the backend can tell.
async fn blockers<C: ConnectionTrait>(
    conn: &C,
    backend: &dyn Probe,
    session: Option<i64>,
) -> Vec<Blocker> {
    let Some(session) = session else {
        return vec![];
    };
    match conn.query_all_raw(backend.blockers(session)).await {
        Ok(rows) => rows
            .iter()
            .filter_map(|r| backends::blocker(r).ok())
            .collect(),
        Err(error) => {
            tracing::debug!("could not list the sessions in the way: {error}");
            vec![]
        }
    }
}

fn in_the_way(holders: &[Blocker]) -> String {
    match holders {
        [] => "another session".to_owned(),
        holders => (holders.iter())
            .map(Blocker::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Inside a step: takes the step's table locks up front, `first` waiting at most the lock
/// timeout while holding nothing, then the others at once or not at all, so the step never
/// waits while holding a lock that someone else waits for (no deadlock with the
/// application). Backends without such statements take nothing here.
pub async fn lock_in_order<C: ConnectionTrait>(
    txn: &C,
    first: TableLock,
    then: &[TableLock],
) -> Result<(), DbErr> {
    let backend = backends::of(txn.get_database_backend());
    for statement in backend.lock_in_order(first, then) {
        txn.execute_raw(statement).await?;
    }
    Ok(())
}

/// Runs one constraint step under [`with_lock_retries`]: its locks in order, then its
/// statements (fixed DDL), in one transaction.
pub async fn run_step<C>(
    ctx: &Context,
    conn: &C,
    what: &str,
    step: &ConstraintStep,
) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    with_lock_retries(ctx, conn, what, Default::default(), |txn| {
        let step = step.clone();
        Box::pin(async move {
            if let Some(first) = step.lock {
                lock_in_order(txn, first, &step.then).await?;
            }
            for sql in &step.statements {
                txn.execute_unprepared(sql).await?;
            }
            Ok(())
        })
    })
    .await
}
