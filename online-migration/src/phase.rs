//! The phase record: which step each table is in, which way, how far, since when and by
//! whom. One row per table the migrations change, written by the migrator around each
//! migration (`began`, then `ended` or `failed`) and, inside a batched step, by each batch's
//! own transaction (`progressed`), so the row never says more than what committed.
//!
//! sea-orm-migration's `seaql_migrations` says which migrations finished; this says what
//! happened since: a step a killed migrator left half-done (`running`), one that failed and
//! why, how far a backfill got. At every start the migrator holds the two against each other
//! (`reconcile`) and says what it found: a database migrated before this record existed (or
//! by the previous layout of these migrations) gets its row from `seaql_migrations`; a record
//! that disagrees with it (rows deleted by hand, a restored backup) is named, and the run
//! goes by `seaql_migrations`, as sea-orm-migration does. `status` prints the record
//! ([`read`]).
//!
//! ```
//! use online_migration::ledger::Ledger;
//! use online_migration::phase;
//! use sea_orm_migration::sea_orm::Database;
//!
//! const LEDGER: Ledger = Ledger {
//!     lock_table: "split_migrator",
//!     phase_table: "split_phase",
//!     advisory_key: 1,
//!     server_lock_name: "split_migrator",
//! };
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), sea_orm_migration::DbErr> {
//! let db = Database::connect("sqlite::memory:").await?;
//! phase::create_table(&db, &LEDGER).await?;
//! phase::began(&db, &LEDGER, "account", "m2_split_names", "up").await?;
//! phase::progressed(&db, &LEDGER, "account", "walked up to account 42").await?;
//! let now = &phase::read(&db, &LEDGER).await?[0];
//! assert_eq!((now.table.as_str(), now.step.as_str()), ("account", "m2_split_names"));
//! assert_eq!(now.state, "running");
//! assert_eq!(now.progress.as_deref(), Some("walked up to account 42"));
//! phase::ended(&db, &LEDGER, "account").await?;
//! assert_eq!(phase::read(&db, &LEDGER).await?[0].state, "done");
//! # Ok(()) }
//! ```

use std::fmt;

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, QueryResult};

use crate::ledger::Ledger;
use crate::this_process;

/// The record's columns (its table is the migration's: [`Ledger::phase_table`]).
#[derive(DeriveIden, Clone, Copy)]
enum PhaseRecord {
    /// The table the step changes.
    TableName,
    /// The migration's name.
    Step,
    /// `up` or `down`.
    Direction,
    /// `running`, `done` or `failed`.
    State,
    /// How far a batched step got (its last key done), as text.
    Progress,
    /// The error a failed step ended with.
    Error,
    StartedAt,
    FinishedAt,
    Host,
    Pid,
}

/// sea-orm-migration's own table (`seaql_migrations`).
const MIGRATIONS_TABLE: &str = "seaql_migrations";

/// The longest error text the record keeps.
const ERROR_CHARS: usize = 1_000;

/// Where one table is, as its row says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Phase {
    /// The table the steps change.
    pub table: String,
    /// The migration that ran last (or runs now) on it.
    pub step: String,
    /// `up` or `down`.
    pub direction: String,
    /// `running` (or left half-done by a migrator that died), `done` or `failed`.
    pub state: String,
    /// How far a batched step got, as its last batch recorded.
    pub progress: Option<String>,
    /// What a failed step ended with.
    pub error: Option<String>,
    /// When the step began (UTC, RFC 3339); none for a row recovered from
    /// `seaql_migrations`.
    pub started_at: Option<String>,
    /// When it ended.
    pub finished_at: Option<String>,
    /// The migrator's host.
    pub host: Option<String>,
    /// Its process id.
    pub pid: Option<i64>,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Phase {
            table,
            step,
            direction,
            state,
            ..
        } = self;
        write!(f, "{table}: {direction} {step} {state}")?;
        if let Some(progress) = &self.progress {
            write!(f, " ({progress})")?;
        }
        match (&self.host, self.pid) {
            (Some(host), Some(pid)) => write!(f, ", by host {host} process {pid}")?,
            _ => write!(f, ", as recorded by seaql_migrations")?,
        }
        if let Some(started) = &self.started_at {
            write!(f, ", began {started}")?;
        }
        if let Some(finished) = &self.finished_at {
            write!(f, ", ended {finished}")?;
        }
        if let Some(error) = &self.error {
            write!(f, ": {error}")?;
        }
        Ok(())
    }
}

/// The record's table, when missing.
pub async fn create_table<C: ConnectionTrait>(db: &C, ledger: &Ledger) -> Result<(), DbErr> {
    let text = |column, len| ColumnDef::new(column).string_len(len).null().to_owned();
    let table = Table::create()
        .table(Alias::new(ledger.phase_table))
        .if_not_exists()
        .col(
            ColumnDef::new(PhaseRecord::TableName)
                .string_len(128)
                .not_null()
                .primary_key(),
        )
        .col(ColumnDef::new(PhaseRecord::Step).string_len(255).not_null())
        .col(
            ColumnDef::new(PhaseRecord::Direction)
                .string_len(8)
                .not_null(),
        )
        .col(ColumnDef::new(PhaseRecord::State).string_len(16).not_null())
        .col(text(PhaseRecord::Progress, 255))
        .col(ColumnDef::new(PhaseRecord::Error).text().null())
        .col(text(PhaseRecord::StartedAt, 64))
        .col(text(PhaseRecord::FinishedAt, 64))
        .col(text(PhaseRecord::Host, 255))
        .col(ColumnDef::new(PhaseRecord::Pid).big_integer().null())
        .to_owned();
    db.execute(&table).await.map(|_| ())
}

/// Drops the record (the end of `reset`: nothing of the migrations is left).
pub async fn drop_table<C: ConnectionTrait>(db: &C, ledger: &Ledger) -> Result<(), DbErr> {
    let drop = Table::drop()
        .table(Alias::new(ledger.phase_table))
        .if_exists()
        .to_owned();
    db.execute(&drop).await.map(|_| ())
}

/// Records that this process begins `direction step` on `table` (the record's table made
/// first: [`create_table`]).
pub async fn began<C: ConnectionTrait>(
    db: &C,
    ledger: &Ledger,
    table: &str,
    step: &str,
    direction: &str,
) -> Result<(), DbErr> {
    let row = [
        (PhaseRecord::Step, Expr::val(step)),
        (PhaseRecord::Direction, Expr::val(direction)),
        (PhaseRecord::State, Expr::val("running")),
        (PhaseRecord::Progress, null()),
        (PhaseRecord::Error, null()),
        (PhaseRecord::StartedAt, Expr::val(this_process::now())),
        (PhaseRecord::FinishedAt, null()),
        (PhaseRecord::Host, Expr::val(this_process::host_name())),
        (PhaseRecord::Pid, Expr::val(this_process::pid())),
    ];
    replace(db, ledger, table, row).await
}

/// Records that the step running on `table` finished.
pub async fn ended<C: ConnectionTrait>(db: &C, ledger: &Ledger, table: &str) -> Result<(), DbErr> {
    let values = [
        (PhaseRecord::State, Expr::val("done")),
        (PhaseRecord::FinishedAt, Expr::val(this_process::now())),
    ];
    update(db, ledger, table, values).await
}

/// Records that the step running on `table` failed with `error`.
pub async fn failed<C: ConnectionTrait>(
    db: &C,
    ledger: &Ledger,
    table: &str,
    error: &DbErr,
) -> Result<(), DbErr> {
    let error: String = error.to_string().chars().take(ERROR_CHARS).collect();
    let values = [
        (PhaseRecord::State, Expr::val("failed")),
        (PhaseRecord::Error, Expr::val(error)),
        (PhaseRecord::FinishedAt, Expr::val(this_process::now())),
    ];
    update(db, ledger, table, values).await
}

/// Records how far the step running on `table` got, in the transaction that commits that
/// far. Nothing when no step is recorded as running (a batched step called on its own).
pub async fn progressed<C: ConnectionTrait>(
    txn: &C,
    ledger: &Ledger,
    table: &str,
    progress: &str,
) -> Result<(), DbErr> {
    let update = Query::update()
        .table(Alias::new(ledger.phase_table))
        .value(PhaseRecord::Progress, progress)
        .and_where(Expr::col(PhaseRecord::TableName).eq(table))
        .and_where(Expr::col(PhaseRecord::State).eq("running"))
        .to_owned();
    txn.execute(&update).await.map(|_| ())
}

/// Every table's row; none where nothing was recorded yet.
pub async fn read<'c>(
    db: impl IntoSchemaManagerConnection<'c>,
    ledger: &Ledger,
) -> Result<Vec<Phase>, DbErr> {
    read_in(&SchemaManager::new(db), ledger).await
}

async fn read_in(manager: &SchemaManager<'_>, ledger: &Ledger) -> Result<Vec<Phase>, DbErr> {
    if !manager.has_table(ledger.phase_table).await? {
        return Ok(vec![]);
    }
    let db = manager.get_connection();
    let select = Query::select()
        .columns([
            PhaseRecord::TableName,
            PhaseRecord::Step,
            PhaseRecord::Direction,
            PhaseRecord::State,
            PhaseRecord::Progress,
            PhaseRecord::Error,
            PhaseRecord::StartedAt,
            PhaseRecord::FinishedAt,
            PhaseRecord::Host,
            PhaseRecord::Pid,
        ])
        .from(Alias::new(ledger.phase_table))
        .order_by(PhaseRecord::TableName, Order::Asc)
        .to_owned();
    let rows = db.query_all(&select).await?;
    rows.iter().map(decode).collect()
}

/// Holds `table`'s row against `seaql_migrations` at the start of a run, records what the
/// row lacks, and returns what an operator should know of it, in one line, if anything.
pub async fn reconcile(
    manager: &SchemaManager<'_>,
    ledger: &Ledger,
    table: &str,
) -> Result<Option<String>, DbErr> {
    let db = manager.get_connection();
    let applied = applied_migrations(manager).await?;
    let phase = read_in(manager, ledger)
        .await?
        .into_iter()
        .find(|p| p.table == table);
    let Some(phase) = phase else {
        let Some(last) = applied.last() else {
            return Ok(None);
        };
        recover(db, ledger, table, last).await?;
        return Ok(Some(format!(
            "no phase record for {table}: this database was migrated before the record \
             existed; seaql_migrations says {last} is applied, recorded as done"
        )));
    };
    let is_applied = applied.contains(&phase.step);
    let line = match (phase.state.as_str(), phase.direction.as_str(), is_applied) {
        ("running", ..) => format!(
            "the last run did not finish ({phase}): its migrator died or lost its connection; \
             this run takes that step up again"
        ),
        ("failed", ..) => format!("the last run failed ({phase}); this run tries again"),
        ("done", "up", false) => format!(
            "the phase record says {phase}, but seaql_migrations does not list {} (changed \
             by hand, or a backup restored): going by seaql_migrations",
            phase.step
        ),
        ("done", "down", true) => format!(
            "the phase record says {phase}, but seaql_migrations still lists {} (changed by \
             hand, or a backup restored): going by seaql_migrations",
            phase.step
        ),
        _ => return Ok(None),
    };
    Ok(Some(line))
}

/// A `done` row for `step`, from `seaql_migrations`: who applied it is not known.
async fn recover<C: ConnectionTrait>(
    db: &C,
    ledger: &Ledger,
    table: &str,
    step: &str,
) -> Result<(), DbErr> {
    create_table(db, ledger).await?;
    let row = [
        (PhaseRecord::Step, Expr::val(step)),
        (PhaseRecord::Direction, Expr::val("up")),
        (PhaseRecord::State, Expr::val("done")),
        (PhaseRecord::Progress, null()),
        (PhaseRecord::Error, null()),
        (PhaseRecord::StartedAt, null()),
        (PhaseRecord::FinishedAt, null()),
        (PhaseRecord::Host, null()),
        (PhaseRecord::Pid, Expr::val(Option::<i64>::None)),
    ];
    replace(db, ledger, table, row).await
}

/// The migrations `seaql_migrations` lists, in order; none before its first run.
async fn applied_migrations(manager: &SchemaManager<'_>) -> Result<Vec<String>, DbErr> {
    if !manager.has_table(MIGRATIONS_TABLE).await? {
        return Ok(vec![]);
    }
    let db = manager.get_connection();
    let select = Query::select()
        .column(Alias::new("version"))
        .from(Alias::new(MIGRATIONS_TABLE))
        .order_by(Alias::new("version"), Order::Asc)
        .to_owned();
    let rows = db.query_all(&select).await?;
    rows.iter().map(|row| row.try_get_by_index(0)).collect()
}

/// `table`'s row replaced by `row` (delete, insert: the same on every backend).
async fn replace<C: ConnectionTrait>(
    db: &C,
    ledger: &Ledger,
    table: &str,
    row: [(PhaseRecord, SimpleExpr); 9],
) -> Result<(), DbErr> {
    let delete = Query::delete()
        .from_table(Alias::new(ledger.phase_table))
        .and_where(Expr::col(PhaseRecord::TableName).eq(table))
        .to_owned();
    db.execute(&delete).await?;
    let (mut columns, mut values) = (vec![PhaseRecord::TableName], vec![Expr::val(table)]);
    for (column, value) in row {
        columns.push(column);
        values.push(value);
    }
    let insert = Query::insert()
        .into_table(Alias::new(ledger.phase_table))
        .columns(columns)
        .values_panic(values)
        .to_owned();
    db.execute(&insert).await.map(|_| ())
}

async fn update<C: ConnectionTrait, const N: usize>(
    db: &C,
    ledger: &Ledger,
    table: &str,
    values: [(PhaseRecord, SimpleExpr); N],
) -> Result<(), DbErr> {
    let update = Query::update()
        .table(Alias::new(ledger.phase_table))
        .values(values)
        .and_where(Expr::col(PhaseRecord::TableName).eq(table))
        .to_owned();
    db.execute(&update).await.map(|_| ())
}

fn decode(row: &QueryResult) -> Result<Phase, DbErr> {
    Ok(Phase {
        table: row.try_get_by_index(0)?,
        step: row.try_get_by_index(1)?,
        direction: row.try_get_by_index(2)?,
        state: row.try_get_by_index(3)?,
        progress: row.try_get_by_index(4)?,
        error: row.try_get_by_index(5)?,
        started_at: row.try_get_by_index(6)?,
        finished_at: row.try_get_by_index(7)?,
        host: row.try_get_by_index(8)?,
        pid: row.try_get_by_index(9)?,
    })
}

fn null() -> SimpleExpr {
    Expr::val(Option::<String>::None)
}
