//! Test harness: a fresh database per test on PostgreSQL, MariaDB or SQLite, legacy schemas
//! built the way old applications built them, and readers that decode what the migration
//! wrote independently of the migration's own code.
//!
//! A server that cannot be reached fails the test with its URL; nothing is skipped.
//! `TEST_POSTGRES_URL` and `TEST_MARIADB_URL` override the servers (default: the local
//! services, `postgres://postgres@127.0.0.1:5432` and `mysql://root@127.0.0.1:3306`).

pub mod end_state;
pub mod galera;
#[cfg(feature = "runtime-tokio")]
pub mod generated;
pub mod legacy;
pub mod read;
pub mod schema;
pub mod server;
#[cfg(feature = "runtime-tokio")]
pub mod standby;

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement, Value};

use server::Server;

/// The migrations' names, in order, as the tests expect them (written out here, not read
/// from the migrator under test).
pub const MIGRATIONS: [&str; 4] = [
    "m20261125_000001_create_legacy_baseline",
    "m20261125_000002_create_deployment_job_agent",
    "m20261125_000003_backfill_deployment_job_agent",
    "m20261125_000004_drop_legacy_job_agent_columns",
];

/// The three backends every case runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    MariaDb,
    Sqlite,
}

/// A database made for one test, left in place afterwards for debugging.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    pub conn: DatabaseConnection,
}

impl TestDb {
    /// Drops any database left by an earlier run of this test and creates it anew.
    pub async fn create(backend: Backend, test: &str) -> TestDb {
        let name = database_name(test);
        let server = Server::for_tests(backend);
        let url = server.url(&name);
        if let Err(error) = server.recreate(&name, None).await {
            panic!("cannot make the test database {name} on {backend:?} at {url}: {error}");
        }
        let conn = connect(&url).await;
        TestDb { backend, url, conn }
    }

    pub fn db_backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    /// Runs one statement with bound values; `$n` placeholders work on every backend, so
    /// cases write each statement once.
    pub async fn exec(&self, sql: &str, values: Vec<Value>) {
        let statement = self.statement(sql, values);
        if let Err(error) = self.conn.execute_raw(statement).await {
            panic!("{:?}: {sql}\n{error}", self.backend);
        }
    }

    /// A statement with `$n` placeholders, rewritten to `?` (values in the order they are
    /// used) off PostgreSQL.
    pub fn statement(&self, sql: &str, values: Vec<Value>) -> Statement {
        positional_statement(self.backend, self.db_backend(), sql, values)
    }
}

/// A statement with `$n` placeholders for `backend`, rewritten to `?` off PostgreSQL.
pub fn positional_statement(
    backend: Backend,
    db_backend: DbBackend,
    sql: &str,
    values: Vec<Value>,
) -> Statement {
    let (sql, values) = match backend {
        Backend::Postgres => (sql.to_owned(), values),
        _ => numbered_to_positional(sql, &values),
    };
    Statement::from_sql_and_values(db_backend, sql, values)
}

/// `$2 … $1` → `? … ?` with the values reordered (and repeated) to match.
fn numbered_to_positional(sql: &str, values: &[Value]) -> (String, Vec<Value>) {
    let mut out = String::with_capacity(sql.len());
    let mut ordered = vec![];
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            let mut number = 0usize;
            while let Some(digit) = chars.peek().and_then(|c| c.to_digit(10)) {
                number = number * 10 + digit as usize;
                chars.next();
            }
            ordered.push(values[number - 1].clone());
            out.push('?');
        } else {
            out.push(c);
        }
    }
    (out, ordered)
}

/// `jat_<test>`, shortened with a hash of the full name where servers' 64-character limit
/// would cut it.
pub(crate) fn database_name(test: &str) -> String {
    let name = format!("jat_{}", test.to_lowercase());
    if name.len() <= 60 {
        return name;
    }
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{}_{hash:016x}", &name[..43])
}

pub(crate) fn server_url(variable: &str, default: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| default.to_owned())
}

pub(crate) async fn connect(url: &str) -> DatabaseConnection {
    match Database::connect(url).await {
        Ok(conn) => conn,
        Err(error) => panic!("cannot reach the test database at {url}: {error}"),
    }
}

pub(crate) async fn exec(conn: &DatabaseConnection, sql: &str) {
    if let Err(error) = conn.execute_unprepared(sql).await {
        panic!("{sql}\n{error}");
    }
}

/// Defines one test per backend for each listed case: `postgres::case`, `mariadb::case`,
/// `sqlite::case`, so the test output names the backend of every result. Built with the
/// `runtime-async-std` feature instead, it defines the SQLite tests only, on async-std.
#[macro_export]
macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        #[cfg(feature = "runtime-tokio")]
        mod postgres {
            $(#[tokio::test]
            async fn $case() {
                super::$case($crate::TestDb::create(
                    $crate::Backend::Postgres, concat!("pg_", stringify!($case))).await).await;
            })*
        }
        #[cfg(feature = "runtime-tokio")]
        mod mariadb {
            $(#[tokio::test]
            async fn $case() {
                super::$case($crate::TestDb::create(
                    $crate::Backend::MariaDb, concat!("my_", stringify!($case))).await).await;
            })*
        }
        #[cfg(feature = "runtime-tokio")]
        mod sqlite {
            $(#[tokio::test]
            async fn $case() {
                super::$case($crate::TestDb::create(
                    $crate::Backend::Sqlite, concat!("lite_", stringify!($case))).await).await;
            })*
        }
        #[cfg(all(feature = "runtime-async-std", not(feature = "runtime-tokio")))]
        mod sqlite_async_std {
            $(#[async_std::test]
            async fn $case() {
                super::$case($crate::TestDb::create(
                    $crate::Backend::Sqlite, concat!("las_", stringify!($case))).await).await;
            })*
        }
    };
}

/// Defines one test per server backend for each listed case, `postgres::case` and
/// `mariadb::case`, each calling `case(Backend)` on a multi-threaded runtime: for cases about
/// concurrent sessions (live writers, held locks, roles), which SQLite's single writer and
/// single-connection pool do not have.
#[macro_export]
macro_rules! on_server_backends {
    ($($case:ident),* $(,)?) => {
        $crate::cases_at_once!(postgres, Postgres, $($case),*);
        $crate::cases_at_once!(mariadb, MariaDb, $($case),*);
    };
}

/// Defines one test per backend for each listed case, `postgres::case`, `mariadb::case` and
/// `sqlite::case`, each calling `case(Backend)` on a multi-threaded runtime: for cases whose
/// sessions run at once on every backend (SQLite's through connections of their own).
#[macro_export]
macro_rules! on_every_backend_at_once {
    ($($case:ident),* $(,)?) => {
        $crate::cases_at_once!(postgres, Postgres, $($case),*);
        $crate::cases_at_once!(mariadb, MariaDb, $($case),*);
        $crate::cases_at_once!(sqlite, Sqlite, $($case),*);
    };
}

/// The module of [`on_server_backends`] and [`on_every_backend_at_once`] for one backend.
#[doc(hidden)]
#[macro_export]
macro_rules! cases_at_once {
    ($module:ident, $backend:ident, $($case:ident),*) => {
        #[cfg(feature = "runtime-tokio")]
        mod $module {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                super::$case($crate::Backend::$backend).await;
            })*
        }
    };
}

/// This test binary run again as a child process that runs only its test
/// `child_process_entry_point`, which acts when `variable` is set: to `url`.
pub fn child_process(variable: &str, url: &str) -> std::process::Command {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "child_process_entry_point",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(variable, url);
    command
}

/// The body of a test binary's child-process entry point: migrates `url` all the way up, and
/// on error prints one line and exits 1, as the command does. With `stop_on_signals`, Ctrl-C
/// and SIGTERM stop it the way they stop the command.
#[cfg(feature = "runtime-tokio")]
pub fn migrate_as_child(url: &str, stop_on_signals: bool) {
    use migration::Migrator;
    use migration::context::Context;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let context = Context::from_env().expect("the environment's settings");
        if stop_on_signals {
            migration::stop::stop_on_signals(context.stop.clone());
        }
        let db = connect(url).await;
        if let Err(error) = Migrator::with(context).up(&db, None).await {
            eprintln!("error: {error}");
            std::process::exit(1);
        }
    });
}

/// A second connection to `db` that records the SQL text of every statement it runs
/// (values travel separately and are not recorded).
pub async fn recording_connection(
    db: &TestDb,
) -> (
    DatabaseConnection,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let mut conn = connect(&db.url).await;
    let statements = std::sync::Arc::new(std::sync::Mutex::new(vec![]));
    let recorded = statements.clone();
    conn.set_metric_callback(move |info| {
        recorded.lock().unwrap().push(info.statement.sql.clone());
    });
    (conn, statements)
}
