//! The commands that drop tables (`fresh`, `refresh`, `reset`) look before they leap: on a
//! database whose tables hold rows they refuse, naming the tables and their row counts,
//! unless the operator says the data may go (`--discard-data`, or
//! [`DISCARD_DATA_ENV`] for those who drive the command through `sea-orm-cli migrate`, which
//! passes on no flag of ours). Only rows an operator would lose count: the migration's own
//! bookkeeping (the tables it names as such) does not.

use sea_orm_migration::prelude::*;

use crate::backends;
use crate::table_rows;

/// The environment variable that gives `--discard-data` (`1`, `true`, `yes` or `on`).
pub const DISCARD_DATA_ENV: &str = "MIGRATION_DISCARD_DATA";

/// A table that holds rows, and how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRows {
    /// The table's name.
    pub table: String,
    /// Its row count.
    pub rows: u64,
}

/// Every table of the database (or PostgreSQL schema) that holds rows, by name, but the
/// `bookkeeping` ones.
pub async fn tables_with_rows<C: ConnectionTrait>(
    conn: &C,
    bookkeeping: &[&str],
) -> Result<Vec<TableRows>, DbErr> {
    let backend = backends::of(conn.get_database_backend());
    let mut found = vec![];
    for row in conn.query_all_raw(backend.tables()).await? {
        let table: String = row.try_get_by_index(0)?;
        if bookkeeping.contains(&table.as_str()) {
            continue;
        }
        let rows = table_rows::count(conn, Alias::new(table.as_str())).await?;
        if rows > 0 {
            found.push(TableRows { table, rows });
        }
    }
    Ok(found)
}

/// Refuses `command` when any table but the `bookkeeping` ones holds rows: one message
/// naming them all.
pub async fn refuse_if_data<C: ConnectionTrait>(
    conn: &C,
    bookkeeping: &[&str],
    command: &str,
) -> Result<(), DbErr> {
    let found = tables_with_rows(conn, bookkeeping).await?;
    if found.is_empty() {
        return Ok(());
    }
    Err(DbErr::Migration(format!(
        "refusing to `{command}`: it would drop data in {}; pass --discard-data \
         (or set {DISCARD_DATA_ENV}=1) to do it anyway",
        listing(&found)
    )))
}

/// The one-line warning for `command` run with the data discarded, or `None` when no table
/// (but the `bookkeeping` ones) holds rows a user would lose.
pub async fn discard_warning<C: ConnectionTrait>(
    conn: &C,
    bookkeeping: &[&str],
    command: &str,
) -> Result<Option<String>, DbErr> {
    let found = tables_with_rows(conn, bookkeeping).await?;
    Ok((!found.is_empty()).then(|| {
        format!(
            "warning: `{command}` drops data in {} (told to discard it)",
            listing(&found)
        )
    }))
}

/// `table (n rows), …`
fn listing(found: &[TableRows]) -> String {
    let tables: Vec<String> = (found.iter())
        .map(|t| format!("{} ({} rows)", t.table, t.rows))
        .collect();
    tables.join(", ")
}
