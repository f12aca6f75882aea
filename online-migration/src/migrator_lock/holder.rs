//! The row that says who holds the migrator lock, on every backend (on MariaDB it is the
//! lock itself: see `mysql`).

use std::fmt;

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

use crate::this_process;

/// The lock table's columns (its name is the migration's: [`crate::ledger::Ledger`]).
#[derive(DeriveIden, Clone, Copy)]
pub(super) enum LockColumn {
    Name,
    /// A token of the holding run, none when nobody holds the lock.
    Owner,
    Host,
    Pid,
    Step,
    Since,
    /// MariaDB: when the lease lapses, in the server's clock (milliseconds since 1970).
    LeaseUntil,
    /// MariaDB: the server (`host:port`) the holder's session is on.
    Node,
}

/// The row's name: one lock per database (per schema on PostgreSQL).
pub(super) const LOCK_NAME: &str = "migrate";

/// Who holds the migrator lock, as it said when it took it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holder {
    /// The holder's host name.
    pub host: Option<String>,
    /// Its process id.
    pub pid: Option<i64>,
    /// The step it is at (`up m20261125_000003_backfill_deployment_job_agent`, say).
    pub step: Option<String>,
    /// When it took the lock (UTC, RFC 3339).
    pub since: Option<String>,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (Some(host), Some(pid)) = (&self.host, self.pid) else {
            return write!(f, "a migrator that has not said who it is yet");
        };
        write!(f, "the migrator on host {host}, process {pid}")?;
        if let Some(step) = &self.step {
            write!(f, ", at `{step}`")?;
        }
        if let Some(since) = &self.since {
            write!(f, ", holding the lock since {since}")?;
        }
        Ok(())
    }
}

/// The table, when missing.
pub(super) async fn create_table<C: ConnectionTrait>(db: &C, table: &str) -> Result<(), DbErr> {
    let text = |column| ColumnDef::new(column).string_len(255).null().to_owned();
    let table = Table::create()
        .table(Alias::new(table))
        .if_not_exists()
        .col(
            ColumnDef::new(LockColumn::Name)
                .string_len(64)
                .not_null()
                .primary_key(),
        )
        .col(ColumnDef::new(LockColumn::Owner).string_len(64).null())
        .col(text(LockColumn::Host))
        .col(ColumnDef::new(LockColumn::Pid).big_integer().null())
        .col(text(LockColumn::Step))
        .col(ColumnDef::new(LockColumn::Since).string_len(64).null())
        .col(ColumnDef::new(LockColumn::LeaseUntil).big_integer().null())
        .col(text(LockColumn::Node))
        .to_owned();
    db.execute(&table).await.map(|_| ())
}

/// Drops the table (the end of `reset`: nothing of the migrations is left).
pub(super) async fn drop_table<C: ConnectionTrait>(db: &C, table: &str) -> Result<(), DbErr> {
    let drop = Table::drop()
        .table(Alias::new(table))
        .if_exists()
        .to_owned();
    db.execute(&drop).await.map(|_| ())
}

/// This process, as the row names it: host, pid, now.
pub(super) fn this_process() -> [(LockColumn, SimpleExpr); 3] {
    [
        (LockColumn::Host, Expr::val(this_process::host_name())),
        (LockColumn::Pid, Expr::val(this_process::pid())),
        (LockColumn::Since, Expr::val(this_process::now())),
    ]
}

/// Writes this run in as the holder (PostgreSQL and SQLite, whose lock is held elsewhere).
pub(super) async fn claim<C: ConnectionTrait>(
    db: &C,
    table: &str,
    token: &str,
) -> Result<(), DbErr> {
    create_table(db, table).await?;
    let delete = Query::delete()
        .from_table(Alias::new(table))
        .and_where(Expr::col(LockColumn::Name).eq(LOCK_NAME))
        .to_owned();
    db.execute(&delete).await?;
    let mut columns = vec![LockColumn::Name, LockColumn::Owner];
    let mut values: Vec<SimpleExpr> = vec![Expr::val(LOCK_NAME), Expr::val(token)];
    for (column, value) in this_process() {
        columns.push(column);
        values.push(value);
    }
    let insert = Query::insert()
        .into_table(Alias::new(table))
        .columns(columns)
        .values_panic(values)
        .to_owned();
    db.execute(&insert).await.map(|_| ())
}

/// Who holds the lock now, as far as the row says.
pub(super) async fn current<C: ConnectionTrait>(db: &C, table: &str) -> Result<Holder, DbErr> {
    let select = Query::select()
        .columns([
            LockColumn::Host,
            LockColumn::Pid,
            LockColumn::Step,
            LockColumn::Since,
        ])
        .from(Alias::new(table))
        .and_where(Expr::col(LockColumn::Name).eq(LOCK_NAME))
        .and_where(Expr::col(LockColumn::Owner).is_not_null())
        .to_owned();
    let Some(row) = db.query_one(&select).await? else {
        return Ok(Holder::default());
    };
    Ok(Holder {
        host: row.try_get_by_index(0)?,
        pid: row.try_get_by_index(1)?,
        step: row.try_get_by_index(2)?,
        since: row.try_get_by_index(3)?,
    })
}

/// Records the step the holder is at.
pub(super) async fn set_step<C: ConnectionTrait>(
    db: &C,
    table: &str,
    token: &str,
    step: &str,
) -> Result<(), DbErr> {
    let update = Query::update()
        .table(Alias::new(table))
        .value(LockColumn::Step, step)
        .and_where(Expr::col(LockColumn::Name).eq(LOCK_NAME))
        .and_where(Expr::col(LockColumn::Owner).eq(token))
        .to_owned();
    db.execute(&update).await.map(|_| ())
}

/// Clears the row, if this run still holds it (on MariaDB: gives the lease back).
pub(super) async fn clear<C: ConnectionTrait>(
    db: &C,
    table: &str,
    token: &str,
) -> Result<(), DbErr> {
    let null = || Expr::val(Option::<String>::None);
    let update = Query::update()
        .table(Alias::new(table))
        .values([
            (LockColumn::Owner, null()),
            (LockColumn::Step, null()),
            (LockColumn::LeaseUntil, Expr::val(Option::<i64>::None)),
        ])
        .and_where(Expr::col(LockColumn::Name).eq(LOCK_NAME))
        .and_where(Expr::col(LockColumn::Owner).eq(token))
        .to_owned();
    db.execute(&update).await.map(|_| ())
}
