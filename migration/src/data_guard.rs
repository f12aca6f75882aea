//! The commands that drop tables (`fresh`, `refresh`, `reset`) look before they leap: on a
//! database whose tables hold rows they refuse, naming the tables and their row counts,
//! unless the operator says the data may go (`--discard-data`, or [`DISCARD_DATA_ENV`]).
//! The engine's guard ([`online_migration::data_guard`]), with these migrations' own
//! bookkeeping ([`BOOKKEEPING_TABLES`]) left out of the count.

use sea_orm_migration::prelude::*;

pub use crate::tables::BOOKKEEPING_TABLES;
use online_migration::data_guard;
pub use online_migration::data_guard::{DISCARD_DATA_ENV, TableRows};

/// Every table of the database (or PostgreSQL schema) that holds rows, but bookkeeping.
pub async fn tables_with_rows<C: ConnectionTrait>(conn: &C) -> Result<Vec<TableRows>, DbErr> {
    data_guard::tables_with_rows(conn, &BOOKKEEPING_TABLES).await
}

/// Refuses `command` when any table holds rows: one message naming them all.
pub async fn refuse_if_data<C: ConnectionTrait>(conn: &C, command: &str) -> Result<(), DbErr> {
    data_guard::refuse_if_data(conn, &BOOKKEEPING_TABLES, command).await
}

/// The one-line warning for `command` run with the data discarded, or `None` when no table
/// holds rows a user would lose.
pub async fn discard_warning<C: ConnectionTrait>(
    conn: &C,
    command: &str,
) -> Result<Option<String>, DbErr> {
    data_guard::discard_warning(conn, &BOOKKEEPING_TABLES, command).await
}
