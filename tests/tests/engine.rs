//! The engine (`online-migration`) on a schema of its own, which names no table of the
//! job-agent change: a locked step waits for the application's lock a bounded time, retries,
//! names the session in its way and gives up changing nothing; and no step hands its
//! connection back with the session state its context says to reset.
#![cfg(feature = "runtime-tokio")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use online_migration::backends::TableLock;
use online_migration::context::Context;
use online_migration::locks::{lock_in_order, with_lock_retries};
use online_migration::settings::Settings;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, Statement, TransactionTrait,
};
use tests::{Backend, TestDb, on_every_backend, read};

on_every_backend!(
    a_step_waits_for_the_application_and_runs_once_it_lets_go,
    a_step_that_cannot_get_its_lock_gives_up_naming_the_session_and_changes_nothing,
);

/// MariaDB keeps a session variable set in a transaction that rolled back (PostgreSQL undoes
/// such a setting with the transaction; SQLite's state lives in it or in the file).
mod session {
    mod mariadb {
        #[tokio::test]
        async fn a_failed_step_leaves_no_session_state_behind() {
            super::super::a_failed_step_leaves_no_session_state_behind().await
        }
    }
}

const LOCK_TIMEOUT: Duration = Duration::from_millis(300);
const HELD_FOR: Duration = Duration::from_millis(1500);

fn context(lock_retry_for: Duration) -> Context {
    Context::new(Settings {
        lock_timeout: LOCK_TIMEOUT,
        lock_retry_for,
        ..Settings::default()
    })
}

/// A table of the engine's own tests, with a row, and a second connection whose open
/// transaction has written that row (it holds a lock DDL on the table must wait for).
async fn ledger_held(db: &TestDb) -> (DatabaseConnection, DatabaseTransaction) {
    db.exec(
        "CREATE TABLE ledger (id INTEGER PRIMARY KEY, note TEXT)",
        vec![],
    )
    .await;
    db.exec("INSERT INTO ledger (id, note) VALUES (1, 'first')", vec![])
        .await;
    let application = Database::connect(&db.url)
        .await
        .expect("a second connection");
    let txn = application
        .begin()
        .await
        .expect("the application's transaction");
    let update = db.statement("UPDATE ledger SET note = 'held' WHERE id = 1", vec![]);
    txn.execute_raw(update)
        .await
        .expect("the application writes");
    (application, txn)
}

/// Adds a column to `ledger`, its lock taken first.
async fn add_a_column(ctx: &Context, conn: &DatabaseConnection) -> Result<(), DbErr> {
    with_lock_retries(
        ctx,
        conn,
        "adding a column to ledger",
        Default::default(),
        |txn| {
            Box::pin(async move {
                lock_in_order(txn, TableLock::access_exclusive("ledger"), &[]).await?;
                txn.execute_unprepared("ALTER TABLE ledger ADD COLUMN added INTEGER")
                    .await?;
                Ok(())
            })
        },
    )
    .await
}

async fn a_step_waits_for_the_application_and_runs_once_it_lets_go(db: TestDb) {
    let (_application, held) = ledger_held(&db).await;
    let ctx = context(Duration::from_secs(60));
    let conn = db.conn.clone();
    let started = Instant::now();
    let step = tokio::spawn(async move { add_a_column(&ctx, &conn).await });
    tokio::time::sleep(HELD_FOR).await;
    assert!(!step.is_finished(), "the step waits while the lock is held");
    held.rollback().await.expect("the application lets go");
    step.await
        .unwrap()
        .expect("the step runs once the lock is free");
    let took = started.elapsed();
    println!(
        "{:?}: the step took {} ms beside a {} ms holder",
        db.backend,
        took.as_millis(),
        HELD_FOR.as_millis()
    );
    assert!(took >= HELD_FOR);
    assert!(
        read::columns(&db, "ledger")
            .await
            .contains(&"added".to_owned())
    );
}

async fn a_step_that_cannot_get_its_lock_gives_up_naming_the_session_and_changes_nothing(
    db: TestDb,
) {
    let (_application, held) = ledger_held(&db).await;
    let session: Option<i64> = match db.backend {
        Backend::Sqlite => None,
        backend => {
            let sql = match backend {
                Backend::Postgres => "SELECT CAST(pg_backend_pid() AS bigint)",
                _ => "SELECT CAST(CONNECTION_ID() AS SIGNED)",
            };
            let row = held
                .query_one_raw(db.statement(sql, vec![]))
                .await
                .unwrap()
                .unwrap();
            Some(row.try_get_by_index(0).unwrap())
        }
    };
    let error = add_a_column(&context(Duration::from_secs(2)), &db.conn)
        .await
        .expect_err("the lock is never free");
    let message = error.to_string();
    println!("{:?}: {message}", db.backend);
    assert!(
        message.starts_with("Migration Error: gave up on adding a column to ledger after "),
        "{message}"
    );
    if let Some(session) = session {
        assert!(
            message.contains(&format!("session {session} ")),
            "names session {session}: {message}"
        );
    }
    held.rollback().await.unwrap();
    assert!(
        !read::columns(&db, "ledger")
            .await
            .contains(&"added".to_owned())
    );
}

/// A step that sets a session variable and fails: with the context's reset, the one pooled
/// connection comes back without it.
async fn a_failed_step_leaves_no_session_state_behind() {
    let db = TestDb::create(Backend::MariaDb, "engine_session_state").await;
    let (set, read_back, reset) = (
        "SET @engine_test_flag = 'on'",
        "SELECT @engine_test_flag",
        "SET @engine_test_flag = NULL",
    );
    let mut options = ConnectOptions::new(db.url.clone());
    options.max_connections(1).min_connections(1);
    let pool = Database::connect(options)
        .await
        .expect("a one-connection pool");
    let backend: DbBackend = pool.get_database_backend();
    let flag = async || -> Option<String> {
        let row = pool
            .query_one_raw(Statement::from_string(backend, read_back))
            .await
            .unwrap()?;
        row.try_get_by_index::<Option<String>>(0)
            .unwrap()
            .filter(|v| !v.is_empty())
    };
    let fail_after_setting = |ctx: Context| {
        let pool = pool.clone();
        async move {
            with_lock_retries(
                &ctx,
                &pool,
                "a step that fails",
                Default::default(),
                |txn| {
                    Box::pin(async move {
                        txn.execute_raw(Statement::from_string(backend, set))
                            .await?;
                        Err::<(), _>(DbErr::Custom("the step fails".into()))
                    })
                },
            )
            .await
        }
    };

    fail_after_setting(context(Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert_eq!(
        flag().await.as_deref(),
        Some("on"),
        "without a reset the state stays: the case is real"
    );
    pool.execute_raw(Statement::from_string(backend, reset))
        .await
        .unwrap();

    let reset_it = move |b| vec![Statement::from_string(b, reset)];
    let ctx = context(Duration::from_secs(5)).with_session_reset(Arc::new(reset_it));
    fail_after_setting(ctx).await.unwrap_err();
    assert_eq!(
        flag().await,
        None,
        "the reset ran before the connection went back"
    );
}
