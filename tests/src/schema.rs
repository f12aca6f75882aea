//! What the database says a table looks like, read from each backend's catalogue.

use sea_orm::{ConnectionTrait, QueryResult};

use crate::{Backend, TestDb};

/// One column: name, declared type (lower case), nullability.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ColumnFacts {
    pub name: String,
    pub db_type: String,
    pub nullable: bool,
}

/// One single-column foreign key: column → table(column), and whether deletes cascade.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ForeignKeyFacts {
    pub column: String,
    pub parent: String,
    pub parent_column: String,
    pub cascades: bool,
}

async fn rows(db: &TestDb, sql: &str, table: &str) -> Vec<QueryResult> {
    let statement = db.statement(sql, vec![table.into()]);
    match db.conn.query_all_raw(statement).await {
        Ok(rows) => rows,
        Err(error) => panic!("{:?}: {sql}\n{error}", db.backend),
    }
}

fn text(row: &QueryResult, index: usize) -> String {
    row.try_get_by_index::<String>(index).expect("text column")
}

/// The table's columns, sorted by name.
pub async fn columns(db: &TestDb, table: &str) -> Vec<ColumnFacts> {
    let sql = match db.backend {
        Backend::Postgres => {
            "SELECT CAST(column_name AS text), CAST(udt_name AS text), CAST(is_nullable AS text) \
             FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1"
        }
        Backend::MariaDb => {
            "SELECT CAST(COLUMN_NAME AS CHAR), CAST(COLUMN_TYPE AS CHAR), CAST(IS_NULLABLE AS CHAR) \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = $1"
        }
        Backend::Sqlite => {
            "SELECT name, type, CASE WHEN \"notnull\" = 0 AND pk = 0 THEN 'YES' ELSE 'NO' END \
             FROM pragma_table_info($1)"
        }
    };
    let mut columns: Vec<ColumnFacts> = rows(db, sql, table)
        .await
        .iter()
        .map(|row| ColumnFacts {
            name: text(row, 0),
            db_type: text(row, 1).to_lowercase(),
            nullable: text(row, 2) == "YES",
        })
        .collect();
    columns.sort();
    columns
}

/// The primary key's columns, sorted.
pub async fn primary_key(db: &TestDb, table: &str) -> Vec<String> {
    let sql = match db.backend {
        Backend::Postgres => {
            "SELECT CAST(a.attname AS text) FROM pg_index i JOIN pg_attribute a \
             ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = to_regclass($1) AND i.indisprimary"
        }
        Backend::MariaDb => {
            "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.KEY_COLUMN_USAGE \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = $1 AND CONSTRAINT_NAME = 'PRIMARY'"
        }
        Backend::Sqlite => "SELECT name FROM pragma_table_info($1) WHERE pk > 0",
    };
    let mut key: Vec<String> = rows(db, sql, table)
        .await
        .iter()
        .map(|r| text(r, 0))
        .collect();
    key.sort();
    key
}

/// The table's foreign keys, sorted.
pub async fn foreign_keys(db: &TestDb, table: &str) -> Vec<ForeignKeyFacts> {
    let sql = match db.backend {
        Backend::Postgres => {
            "SELECT CAST(a.attname AS text), CAST(CAST(c.confrelid AS regclass) AS text), \
             CAST(p.attname AS text), CASE c.confdeltype WHEN 'c' THEN 'CASCADE' ELSE 'OTHER' END \
             FROM pg_constraint c \
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] \
             JOIN pg_attribute p ON p.attrelid = c.confrelid AND p.attnum = c.confkey[1] \
             WHERE c.conrelid = to_regclass($1) AND c.contype = 'f'"
        }
        Backend::MariaDb => {
            "SELECT CAST(k.COLUMN_NAME AS CHAR), CAST(k.REFERENCED_TABLE_NAME AS CHAR), \
             CAST(k.REFERENCED_COLUMN_NAME AS CHAR), CAST(r.DELETE_RULE AS CHAR) \
             FROM information_schema.KEY_COLUMN_USAGE k \
             JOIN information_schema.REFERENTIAL_CONSTRAINTS r \
             ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME \
             WHERE k.TABLE_SCHEMA = DATABASE() AND k.TABLE_NAME = $1 \
             AND k.REFERENCED_TABLE_NAME IS NOT NULL"
        }
        Backend::Sqlite => {
            "SELECT \"from\", \"table\", \"to\", on_delete FROM pragma_foreign_key_list($1)"
        }
    };
    let mut keys: Vec<ForeignKeyFacts> = rows(db, sql, table)
        .await
        .iter()
        .map(|row| ForeignKeyFacts {
            column: text(row, 0),
            parent: text(row, 1),
            parent_column: text(row, 2),
            cascades: text(row, 3).eq_ignore_ascii_case("cascade"),
        })
        .collect();
    keys.sort();
    keys
}

/// The columns of index `name` on `table`, in index order (empty when there is none).
pub async fn index_columns(db: &TestDb, table: &str, name: &str) -> Vec<String> {
    let sql = match db.backend {
        Backend::Postgres => {
            "SELECT CAST(a.attname AS text) FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indexrelid \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = to_regclass($1) AND c.relname = $2 \
             ORDER BY array_position(CAST(i.indkey AS int2[]), a.attnum)"
        }
        Backend::MariaDb => {
            "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = $1 AND INDEX_NAME = $2 \
             ORDER BY SEQ_IN_INDEX"
        }
        Backend::Sqlite => {
            "SELECT name FROM pragma_index_info($2) \
             WHERE EXISTS (SELECT 1 FROM pragma_index_list($1) WHERE name = $2) ORDER BY seqno"
        }
    };
    let statement = db.statement(sql, vec![table.into(), name.into()]);
    let found = db
        .conn
        .query_all_raw(statement)
        .await
        .expect("index columns");
    found.iter().map(|r| text(r, 0)).collect()
}
