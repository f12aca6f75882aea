//! The migration command: the standard commands of `sea-orm-cli migrate` (`up`, `down`,
//! `status`, `fresh`, `refresh`, `reset`, `init`, `generate`), plus `preview`, a SQLite file
//! as the default database, checks before anything changes, and one-line errors.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use migration::context::Context;
use migration::settings::{self, Settings};
use migration::{Migrator, MigratorTrait, SchemaManager};
use sea_orm_cli::MigrateSubcommands;
use sea_orm_migration::sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

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

    /// How long to wait for another migrator of the same database (another replica of a
    /// rolling deploy) to finish before giving up, changing nothing. Default 15m.
    #[arg(long, global = true, env = settings::MIGRATOR_WAIT_ENV,
          value_parser = settings::parse_duration)]
    migrator_wait: Option<Duration>,

    /// `fresh`, `refresh` and `reset`: drop tables that hold rows (every table of the
    /// database for `fresh`). Without it they refuse and name the tables. Through
    /// `sea-orm-cli migrate`, which passes on no flag of ours, set MIGRATION_DISCARD_DATA=1.
    #[arg(long, global = true, env = migration::data_guard::DISCARD_DATA_ENV,
          value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false,
          num_args = 0, default_missing_value = "true", action = clap::ArgAction::Set)]
    discard_data: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

/// The standard commands of `sea-orm-cli migrate` (parsed by sea-orm-cli's own definitions,
/// so they stay in step with it), and ours.
#[derive(Subcommand)]
enum Command {
    /// Show what `up` would do to a legacy database, changing nothing.
    Preview {
        /// Print JSON instead of the report for people.
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Migrate(MigrateSubcommands),
}

/// Where `init` and `generate` write, as with sea-orm-cli: the migration crate's directory.
const MIGRATION_DIR: &str = "./";

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let url = cli.database_url.clone();
    let password = url.as_deref().and_then(password_of).map(Arc::<str>::from);
    init_tracing(cli.verbose, password.clone());
    let settings = match Settings::from_env() {
        Ok(settings) => Settings {
            lock_timeout: cli.lock_timeout.unwrap_or(settings.lock_timeout),
            lock_retry_for: cli.lock_retry_for.unwrap_or(settings.lock_retry_for),
            max_replica_lag: cli.max_replica_lag.or(settings.max_replica_lag),
            migrator_wait: cli.migrator_wait.unwrap_or(settings.migrator_wait),
            ..settings
        },
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let command = cli
        .command
        .unwrap_or(Command::Migrate(MigrateSubcommands::Up { num: None }));
    if let Command::Migrate(
        files @ (MigrateSubcommands::Init | MigrateSubcommands::Generate { .. }),
    ) = &command
    {
        return write_migration_files(files);
    }
    let url = match url {
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
    // PostgreSQL's notices (`… does not exist, skipping` for every `IF EXISTS`) say what the
    // server did not do; the log says what the migration did. A `statement_timeout` the
    // role or database carries (production roles often do) would cut a long maintenance
    // statement short at the end of a long step: the migration bounds its lock waits
    // itself (--lock-timeout), and its work takes as long as it takes.
    options.map_sqlx_postgres_opts(|pg| {
        pg.options([
            ("client_min_messages", "warning"),
            ("statement_timeout", "0"),
        ])
    });
    if let Some(schema) = cli.database_schema {
        options.set_schema_search_path(schema);
    }
    let context = Context::new(settings);
    migration::stop::stop_on_signals(context.stop.clone());
    let run = Run {
        command,
        discard_data: cli.discard_data,
        context,
    };
    match run.execute(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", redact(&error, password.as_deref()));
            ExitCode::FAILURE
        }
    }
}

/// `init` and `generate`, which need no database: sea-orm-cli's own code.
fn write_migration_files(command: &MigrateSubcommands) -> ExitCode {
    let written = match command {
        MigrateSubcommands::Init => sea_orm_cli::run_migrate_init(MIGRATION_DIR),
        MigrateSubcommands::Generate {
            migration_name,
            local_time,
            ..
        } => sea_orm_cli::run_migrate_generate(MIGRATION_DIR, migration_name, !local_time),
        _ => Ok(()),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// A command that talks to the database. The standard ones are dispatched here rather than
/// by sea-orm-migration's `run_migrate`, which installs a log subscriber of its own (the
/// migrator's lines only: the backfill's progress would be lost) and panics beside ours.
struct Run {
    command: Command,
    discard_data: bool,
    /// The settings from the flags and the environment, and the stop the signals set.
    context: Context,
}

impl Run {
    async fn execute(self, options: ConnectOptions) -> Result<(), String> {
        let db = Database::connect(options)
            .await
            .map_err(|e| format!("cannot connect to the database: {e}"))?;
        self.preflight(&db).await.map_err(|e| e.to_string())?;
        let migrate = match self.command {
            Command::Preview { json } => {
                return preview(&self.context, &db, json)
                    .await
                    .map_err(|e| e.to_string());
            }
            Command::Migrate(migrate) => migrate,
        };
        let migrator = Migrator::with(self.context);
        let result = match migrate {
            MigrateSubcommands::Fresh => migrator.fresh(&db).await,
            MigrateSubcommands::Refresh => migrator.refresh(&db).await,
            MigrateSubcommands::Reset => migrator.reset(&db).await,
            MigrateSubcommands::Status => {
                let status = Migrator::status(&db).await;
                for phase in migration::phase::read(&db)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    tracing::info!("phase: {phase}");
                }
                if let Some(holder) = migration::migrator_lock_holder(&db).await {
                    tracing::info!("migrating now: {holder}");
                }
                status
            }
            MigrateSubcommands::Down { num } => migrator.down(&db, Some(num)).await,
            MigrateSubcommands::Up { num } => migrator.up(&db, num).await,
            MigrateSubcommands::Init | MigrateSubcommands::Generate { .. } => Ok(()),
        };
        result.map_err(|e| e.to_string())
    }

    /// What must hold before anything changes: a `deployment` of the legacy shape (on a
    /// first run, before the migrator writes its own bookkeeping table), every privilege
    /// `up` needs (all missing ones named at once), replicas in sight when
    /// `--max-replica-lag` is set, and no data in tables a destructive command would drop.
    async fn preflight(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        let manager = SchemaManager::new(db);
        let first_run = !manager.has_table("seaql_migrations").await?;
        if first_run {
            migration::legacy_shape::check(&manager).await?;
        }
        let Command::Migrate(migrate) = &self.command else {
            return Ok(());
        };
        let batched_steps_may_run = matches!(
            migrate,
            MigrateSubcommands::Up { .. } | MigrateSubcommands::Down { .. }
        );
        if batched_steps_may_run && self.context.settings.max_replica_lag.is_some() {
            migration::replicas::require_visible(db).await?;
        }
        let destructive = match migrate {
            MigrateSubcommands::Up { .. } => {
                if first_run || !Migrator::get_pending_migrations(db).await?.is_empty() {
                    migration::privileges::require(db).await?;
                }
                return Ok(());
            }
            MigrateSubcommands::Fresh => "fresh",
            MigrateSubcommands::Refresh => "refresh",
            MigrateSubcommands::Reset => "reset",
            _ => return Ok(()),
        };
        if !self.discard_data {
            return migration::data_guard::refuse_if_data(db, destructive).await;
        }
        if let Some(warning) = migration::data_guard::discard_warning(db, destructive).await? {
            eprintln!("{warning}");
        }
        Ok(())
    }
}

/// `preview`: the report (or JSON), and a warning when `up` would be refused.
async fn preview(ctx: &Context, db: &DatabaseConnection, json: bool) -> Result<(), DbErr> {
    let preview = migration::backfill::preview(ctx, db).await?;
    match json {
        true => println!("{}", serde_json::to_string_pretty(&preview).expect("JSON")),
        false => print!("{}", preview.to_text()),
    }
    let missing = migration::privileges::missing(db).await?;
    if !missing.is_empty() {
        eprintln!(
            "warning: `up` would be refused: the database role lacks: {}",
            missing.join("; ")
        );
    }
    Ok(())
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
/// `-v` or `RUST_LOG` for more. Every line goes through [`RedactedStderr`]: at debug level
/// the drivers print their whole connect options, URL and password included.
fn init_tracing(verbose: bool, password: Option<Arc<str>>) {
    let default = match verbose {
        true => "debug",
        false => "info,sqlx=warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(RedactedStderr { password })
        .init();
}

/// Standard error with the database password masked in every log line (both spellings,
/// as typed and percent-decoded; see [`redact`]).
#[derive(Clone)]
struct RedactedStderr {
    password: Option<Arc<str>>,
}

impl<'a> MakeWriter<'a> for RedactedStderr {
    type Writer = RedactedLine;

    fn make_writer(&'a self) -> RedactedLine {
        RedactedLine {
            password: self.password.clone(),
            buffer: Vec::new(),
        }
    }
}

/// One log event, held until the logger is done with it, then masked and written whole (a
/// password may straddle two of the logger's writes).
struct RedactedLine {
    password: Option<Arc<str>>,
    buffer: Vec<u8>,
}

impl Write for RedactedLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&self.buffer);
        let masked = redact(&text, self.password.as_deref());
        self.buffer.clear();
        std::io::stderr().write_all(masked.as_bytes())
    }
}

impl Drop for RedactedLine {
    fn drop(&mut self) {
        let _ = self.flush();
    }
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
