//! The commands that drop tables (`fresh`, `refresh`, `reset`) look before they leap: on a
//! database whose tables hold rows they refuse, naming the tables and their row counts,
//! unless the operator says the data may go.

use sea_orm_migration::prelude::*;

use crate::backends;
use crate::table_rows;

/// The migrator's own bookkeeping, which says nothing about the operator's data.
const BOOKKEEPING: &str = "seaql_migrations";

/// A table that holds rows, and how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRows {
    /// The table's name.
    pub table: String,
    /// Its row count.
    pub rows: u64,
}

/// Every table of the database (or PostgreSQL schema) that holds rows, by name.
pub async fn tables_with_rows<C: ConnectionTrait>(conn: &C) -> Result<Vec<TableRows>, DbErr> {
    let backend = backends::of(conn.get_database_backend());
    let mut found = vec![];
    for row in conn.query_all_raw(backend.tables()).await? {
        let table: String = row.try_get_by_index(0)?;
        if table == BOOKKEEPING {
            continue;
        }
        let rows = table_rows::count(conn, Alias::new(table.as_str())).await?;
        if rows > 0 {
            found.push(TableRows { table, rows });
        }
    }
    Ok(found)
}

/// Refuses `command` when any table holds rows: one message naming them all.
pub async fn refuse_if_data<C: ConnectionTrait>(conn: &C, command: &str) -> Result<(), DbErr> {
    let found = tables_with_rows(conn).await?;
    if found.is_empty() {
        return Ok(());
    }
    let tables: Vec<String> = (found.iter())
        .map(|t| format!("{} ({} rows)", t.table, t.rows))
        .collect();
    Err(DbErr::Migration(format!(
        "refusing to `{command}`: it would drop data in {}; pass --discard-data to do it anyway",
        tables.join(", ")
    )))
}
