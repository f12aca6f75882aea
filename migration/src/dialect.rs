//! The places where PostgreSQL, MariaDB/MySQL and SQLite differ, one function each.
//!
//! Everything here builds statements from fixed identifiers and bound values; the only text
//! taken from the database is a column's declared type, which [`column_type`] checks before
//! it is used in DDL.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, QueryResult, Statement};
use uuid::Uuid;

use crate::backfill::ids::StoredId;

/// Expressions that select id column `column` of `table` so that [`read_id`] can decode it.
///
/// SQLite ids may be text or blobs in the same column, so their storage class is read too.
pub fn select_id(backend: DbBackend, table: impl IntoIden, column: impl IntoIden) -> Vec<Expr> {
    let column = Expr::col((table.into_iden(), column.into_iden()));
    match backend {
        DbBackend::Sqlite => vec![
            Func::cust(Alias::new("typeof")).arg(column.clone()).into(),
            Func::cast_as(column, Alias::new("BLOB")).into(),
        ],
        _ => vec![column],
    }
}

/// Decodes an id selected with [`select_id`], starting at column `*index` (advanced past it).
pub fn read_id(
    backend: DbBackend,
    row: &QueryResult,
    index: &mut usize,
) -> Result<Option<StoredId>, DbErr> {
    let id = match backend {
        DbBackend::Postgres => row
            .try_get_by_index::<Option<Uuid>>(*index)?
            .map(StoredId::Uuid),
        DbBackend::Sqlite => {
            let storage: String = row.try_get_by_index(*index)?;
            *index += 1;
            let bytes: Option<Vec<u8>> = row.try_get_by_index(*index)?;
            bytes.map(|bytes| match storage.as_str() {
                "blob" => StoredId::Bytes(bytes),
                _ => StoredId::Text(String::from_utf8_lossy(&bytes).into_owned()),
            })
        }
        // MariaDB/MySQL: BINARY(16) comes back as 16 bytes; CHAR/VARCHAR/UUID columns as
        // text, which is bound back as text so comparisons use the column's collation.
        _ => row
            .try_get_by_index::<Option<Vec<u8>>>(*index)?
            .map(|bytes| match String::from_utf8(bytes) {
                Ok(text) if text.len() != 16 => StoredId::Text(text),
                Ok(text) => StoredId::Bytes(text.into_bytes()),
                Err(not_text) => StoredId::Bytes(not_text.into_bytes()),
            }),
    };
    *index += 1;
    Ok(id)
}

/// Selects a JSON column as its stored text.
pub fn select_json_text(backend: DbBackend, table: impl IntoIden, column: impl IntoIden) -> Expr {
    let column = Expr::col((table.into_iden(), column.into_iden()));
    match backend {
        DbBackend::Postgres => Func::cast_as(column, Alias::new("text")).into(),
        DbBackend::Sqlite => Func::cast_as(column, Alias::new("TEXT")).into(),
        _ => column,
    }
}

/// A bound JSON value, written as exactly this text.
pub fn json_value(backend: DbBackend, text: String) -> Expr {
    match backend {
        DbBackend::Postgres => Func::cast_as(Expr::val(text), Alias::new("jsonb")).into(),
        _ => Expr::val(text),
    }
}

/// The declared type of `table.column`, for a new column that must hold the same values
/// (a foreign key to it, on MariaDB, must match its type, character set and collation).
pub async fn column_type<C: ConnectionTrait>(
    conn: &C,
    table: &str,
    column: &str,
) -> Result<String, DbErr> {
    let backend = conn.get_database_backend();
    let (sql, values): (&str, Vec<Value>) = match backend {
        DbBackend::Postgres => (
            "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
             WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND NOT a.attisdropped",
            vec![table.into(), column.into()],
        ),
        DbBackend::Sqlite => (
            "SELECT type FROM pragma_table_info(?) WHERE name = ?",
            vec![table.into(), column.into()],
        ),
        _ => (
            "SELECT CONCAT_WS(' ', COLUMN_TYPE, \
                CONCAT('CHARACTER SET ', CHARACTER_SET_NAME), CONCAT('COLLATE ', COLLATION_NAME)) \
             FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = ?",
            vec![table.into(), column.into()],
        ),
    };
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?
        .ok_or_else(|| DbErr::Migration(format!("table `{table}` has no column `{column}`")))?;
    let declared: String = row.try_get_by_index(0)?;
    let declared = match declared.trim() {
        // An untyped SQLite column has no affinity; BLOB declares the same.
        "" => "BLOB".to_owned(),
        declared => declared.to_owned(),
    };
    if !is_plain_type_name(&declared) {
        return Err(DbErr::Migration(format!(
            "column `{table}.{column}` has a type this migration cannot copy: {declared:?}"
        )));
    }
    Ok(declared)
}

/// A type as information schemas print them: words, digits, parentheses, commas.
pub(crate) fn is_plain_type_name(declared: &str) -> bool {
    declared
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | '(' | ')' | ','))
}

#[cfg(test)]
mod tests {
    use super::is_plain_type_name;

    #[test]
    fn declared_types_are_accepted_and_anything_else_refused() {
        for ok in [
            "uuid",
            "binary(16)",
            "char(36) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
        ] {
            assert!(is_plain_type_name(ok), "{ok}");
        }
        for bad in ["text); DROP TABLE x; --", "varchar(36) DEFAULT 'x'", "a\"b"] {
            assert!(!is_plain_type_name(bad), "{bad}");
        }
    }
}
