//! The migration command: `up`, `down`, `status`, `fresh`, `refresh`, `reset`, as
//! `sea-orm-cli migrate` expects, with a SQLite file as the default database.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use migration::settings::{self, Settings};
use migration::{Migrator, MigratorTrait, SchemaManager};
use sea_orm_migration::sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use tracing_subscriber::EnvFilter;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Used when neither `-u` nor `DATABASE_URL` names a database.
const DEFAULT_DATABASE_URL: &str = "sqlite://./deployments.sqlite?mode=rwc";

#[derive(Parser)]
#[command(
    version,
    about = "Moves deployment job agents into deployment_job_agent"
)]
struct Cli {
    /// Show debug messages.
    #[arg(short = 'v', long, global = true)]
    verbose: bool,

    /// PostgreSQL schema (ignored by MySQL and SQLite).
    #[arg(short = 's', long, global = true, env = "DATABASE_SCHEMA")]
    database_schema: Option<String>,

    /// Database URL; a SQLite file in the current directory when not given.
    #[arg(
        short = 'u',
        long,
        global = true,
        env = "DATABASE_URL",
        hide_env_values = true
    )]
    database_url: Option<String>,

    /// Longest wait for a lock on a table the application uses (readers queued behind the
    /// migration wait at most this long); the step is then rolled back and retried.
    /// Default 1s.
    #[arg(long, global = true, env = settings::LOCK_TIMEOUT_ENV,
          value_parser = settings::parse_duration)]
    lock_timeout: Option<Duration>,

    /// How long a step keeps retrying for its locks before the command gives up. Default 15m.
    #[arg(long, global = true, env = settings::LOCK_RETRY_FOR_ENV,
          value_parser = settings::parse_duration)]
    lock_retry_for: Option<Duration>,

    /// PostgreSQL with streaming replicas: pause between batches while a replica has not
    /// replayed WAL older than this (waiting at most --lock-retry-for each time). Off by
    /// default. The role needs pg_read_all_stats to see the replicas' positions.
    #[arg(long, global = true, env = settings::MAX_REPLICA_LAG_ENV,
          value_parser = settings::parse_duration)]
    max_replica_lag: Option<Duration>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Drop all tables from the database, then reapply all migrations.
    Fresh(Destructive),
    /// Roll back all applied migrations, then reapply all migrations.
    Refresh(Destructive),
    /// Roll back all applied migrations.
    Reset(Destructive),
    /// Show the status of all migrations.
    Status,
    /// Apply pending migrations.
    Up {
        /// Number of pending migrations to apply.
        #[arg(short, long)]
        num: Option<u32>,
    },
    /// Show what `up` would do to a legacy database, changing nothing.
    Preview {
        /// Print JSON instead of the report for people.
        #[arg(long)]
        json: bool,
    },
    /// Roll back applied migrations.
    Down {
        /// Number of applied migrations to roll back.
        #[arg(short, long, default_value = "1")]
        num: u32,
    },
}

/// The commands that drop tables refuse when any table holds rows, unless told otherwise.
#[derive(clap::Args)]
struct Destructive {
    /// Drop tables that hold rows (every table of the database for `fresh`).
    #[arg(long)]
    discard_data: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    match Settings::from_env() {
        Ok(settings) => Settings {
            lock_timeout: cli.lock_timeout.unwrap_or(settings.lock_timeout),
            lock_retry_for: cli.lock_retry_for.unwrap_or(settings.lock_retry_for),
            max_replica_lag: cli.max_replica_lag.or(settings.max_replica_lag),
            ..settings
        }
        .install(),
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    }
    let url = match cli.database_url {
        Some(url) => url,
        None => {
            println!("No DATABASE_URL or -u given: using the SQLite file ./deployments.sqlite");
            DEFAULT_DATABASE_URL.to_owned()
        }
    };
    let mut options = ConnectOptions::new(url);
    options
        .sqlx_logging(cli.verbose)
        // Fail in seconds, not half a minute, when the server is down or the URL is wrong.
        .connect_timeout(CONNECT_TIMEOUT)
        .acquire_timeout(CONNECT_TIMEOUT);
    if let Some(schema) = cli.database_schema {
        options.set_schema_search_path(schema);
    }
    let password = password_of(options.get_url()).map(str::to_owned);
    migration::stop::stop_on_signals();
    match run(options, cli.command.unwrap_or(Command::Up { num: None })).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", redact(&error, password.as_deref()));
            ExitCode::FAILURE
        }
    }
}

async fn run(options: ConnectOptions, command: Command) -> Result<(), String> {
    let db = Database::connect(options)
        .await
        .map_err(|e| format!("cannot connect to the database: {e}"))?;
    preflight(&db, &command).await.map_err(|e| e.to_string())?;
    let result = match command {
        Command::Fresh(_) => Migrator::fresh(&db).await,
        Command::Refresh(_) => Migrator::refresh(&db).await,
        Command::Reset(_) => Migrator::reset(&db).await,
        Command::Status => Migrator::status(&db).await,
        Command::Up { num } => Migrator::up(&db, num).await,
        Command::Down { num } => Migrator::down(&db, Some(num)).await,
        Command::Preview { json } => {
            let preview = migration::backfill::preview(&db)
                .await
                .map_err(|e| e.to_string())?;
            match json {
                true => println!("{}", serde_json::to_string_pretty(&preview).expect("JSON")),
                false => print!("{}", preview.to_text()),
            }
            let missing = migration::privileges::missing(&db)
                .await
                .map_err(|e| e.to_string())?;
            if !missing.is_empty() {
                eprintln!(
                    "warning: `up` would be refused: the database role lacks: {}",
                    missing.join("; ")
                );
            }
            return Ok(());
        }
    };
    result.map_err(|e| e.to_string())
}

/// What must hold before anything changes: a `deployment` of the legacy shape (on a first
/// run, before the migrator writes its own bookkeeping table), every privilege `up` needs
/// (all missing ones named at once), replicas in sight when `--max-replica-lag` is set, and
/// no data in tables a destructive command would drop.
async fn preflight(db: &DatabaseConnection, command: &Command) -> Result<(), DbErr> {
    let manager = SchemaManager::new(db);
    let first_run = !manager.has_table("seaql_migrations").await?;
    if first_run {
        migration::legacy_shape::check(&manager).await?;
    }
    let batched_steps_may_run = matches!(command, Command::Up { .. } | Command::Down { .. });
    if batched_steps_may_run && Settings::current()?.max_replica_lag.is_some() {
        migration::replicas::require_visible(db).await?;
    }
    let destructive = match command {
        Command::Up { .. } => {
            if first_run || !Migrator::get_pending_migrations(db).await?.is_empty() {
                migration::privileges::require(db).await?;
            }
            return Ok(());
        }
        Command::Fresh(d) => ("fresh", d.discard_data),
        Command::Refresh(d) => ("refresh", d.discard_data),
        Command::Reset(d) => ("reset", d.discard_data),
        _ => return Ok(()),
    };
    match destructive {
        (name, false) => migration::data_guard::refuse_if_data(db, name).await,
        (_, true) => Ok(()),
    }
}

/// The password in a database URL (`scheme://user:password@host/…`), if any.
fn password_of(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?']).next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

/// `message` with every spelling of `password` (as typed, and percent-decoded) masked.
fn redact(message: &str, password: Option<&str>) -> String {
    let Some(password) = password else {
        return message.to_owned();
    };
    let decoded = percent_decode(password);
    let mut redacted = message.replace(password, "***");
    if !decoded.is_empty() {
        redacted = redacted.replace(&decoded, "***");
    }
    redacted
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Info for this crate and the migrator (which migration runs, the backfill summary);
/// `-v` or `RUST_LOG` for more.
fn init_tracing(verbose: bool) {
    let default = match verbose {
        true => "debug",
        false => "info,sqlx=warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

#[cfg(test)]
mod tests {
    use super::{password_of, redact};

    #[test]
    fn passwords_are_found_and_masked_in_any_spelling() {
        let url = "postgres://app:s%40cret@db.internal:5432/app?sslmode=require";
        assert_eq!(password_of(url), Some("s%40cret"));
        let message = format!("The connection string '{url}' cannot be parsed (s@cret)");
        let masked = redact(&message, password_of(url));
        assert!(
            !masked.contains("s%40cret") && !masked.contains("s@cret"),
            "{masked}"
        );
        assert_eq!(password_of("mysql://root@127.0.0.1:3306/x"), None);
        assert_eq!(password_of("sqlite://./x.sqlite?mode=rwc"), None);
        assert_eq!(password_of("not a url"), None);
    }
}
