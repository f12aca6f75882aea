//! A column's declaration as each backend's catalogue query answers it (see
//! `Backend::legacy_column_definitions`), and the DDL builders' input that gives it back.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::QueryResult;

use super::is_plain_type_name;

/// How a column is declared, as the catalogue describes it: what a retired column needs to
/// come back as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDecl {
    /// The column's name.
    pub name: String,
    /// The type as the catalogue prints it (checked to be a plain type name).
    pub declared_type: String,
    /// Whether it was `NOT NULL`.
    pub not_null: bool,
    /// The default expression as the catalogue keeps it, if any.
    pub default: Option<String>,
    /// The column's own checks, as its backend records them (see
    /// `Backend::recorded_check`): MariaDB's `JSON` is `LONGTEXT` with
    /// `CHECK (json_valid(…))`; PostgreSQL's checks on the column alone; SQLite's check and
    /// collation clauses as written.
    pub check: Option<String>,
    /// Its foreign key, if it had one.
    pub foreign_key: Option<ForeignKeyDecl>,
}

/// A column's foreign key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKeyDecl {
    /// The constraint's name (SQLite keeps none).
    pub name: Option<String>,
    /// The parent table, as the catalogue names it.
    pub table: String,
    /// The parent column.
    pub column: String,
    /// `NO ACTION`, `RESTRICT`, `CASCADE`, `SET NULL` or `SET DEFAULT`.
    pub on_delete: String,
}

impl ColumnDecl {
    /// Decodes a row of the catalogue query or of the record table (same column order).
    pub(crate) fn decode(row: &QueryResult) -> Result<Self, DbErr> {
        let declared_type: String = row.try_get_by_index(1)?;
        if !is_plain_type_name(&declared_type) {
            return Err(DbErr::Migration(format!(
                "a column has a type this migration cannot restore: {declared_type:?}"
            )));
        }
        let fk_table: Option<String> = row.try_get_by_index(6)?;
        let foreign_key = match fk_table {
            Some(table) => Some(ForeignKeyDecl {
                name: row.try_get_by_index(5)?,
                table,
                column: row.try_get_by_index(7)?,
                on_delete: row.try_get_by_index(8)?,
            }),
            None => None,
        };
        Ok(ColumnDecl {
            name: row.try_get_by_index(0)?,
            declared_type,
            not_null: row.try_get_by_index::<i32>(2)? != 0,
            default: row.try_get_by_index(3)?,
            check: row.try_get_by_index(4)?,
            foreign_key,
        })
    }
}
