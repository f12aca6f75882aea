//! The legacy columns' declarations, kept across the drop: recorded by the drop migration
//! just before the columns go, read back by its `down`, which restores exactly them (type,
//! nullability, default, check, foreign key and its `ON DELETE`, or none), not what the
//! baseline would create.
//!
//! `down` restores them without blocking the application for longer than a lock timeout:
//! the columns come back nullable and without constraints (instant), are filled in batches,
//! and only then get their default, `NOT NULL` and foreign key, each in a short step (see
//! the backends' `restore_constraints`). Databases migrated before the record existed get the
//! baseline's declarations.

use sea_orm_migration::prelude::*;

use crate::backends;
pub use crate::backends::column_decl::{ColumnDecl, ForeignKeyDecl};
use crate::backends::column_type;
use crate::tables::{DEPLOYMENT, Deployment, JOB_AGENT, LEGACY_COLUMNS, LegacyColumnRecord};
use online_migration::table_rows;

/// The record's columns, in the order [`ColumnDecl::decode`] reads them (the same as the
/// backends' catalogue queries).
const RECORD_COLUMNS: [LegacyColumnRecord; 9] = [
    LegacyColumnRecord::ColumnName,
    LegacyColumnRecord::DeclaredType,
    LegacyColumnRecord::NotNull,
    LegacyColumnRecord::DefaultExpr,
    LegacyColumnRecord::CheckClause,
    LegacyColumnRecord::FkName,
    LegacyColumnRecord::FkTable,
    LegacyColumnRecord::FkColumn,
    LegacyColumnRecord::FkOnDelete,
];

/// Records the legacy columns' declarations, if the columns are still there and nothing is
/// recorded yet: a run that failed half-way (MariaDB drops the foreign key in a statement of
/// its own) must not replace the first record with what it left.
pub async fn record<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    let backend = backends::of(conn.get_database_backend());
    let mut defs = vec![];
    for row in conn
        .query_all_raw(backend.legacy_column_definitions())
        .await?
    {
        let mut def = ColumnDecl::decode(&row)?;
        def.check = backend.recorded_check(&def.name, def.check.take());
        defs.push(def);
    }
    if defs.is_empty() {
        return Ok(());
    }
    conn.execute(&record_table()).await?;
    if table_rows::exist(conn, LegacyColumnRecord::Table).await? {
        return Ok(());
    }
    let mut insert = Query::insert();
    insert
        .into_table(LegacyColumnRecord::Table)
        .columns(RECORD_COLUMNS);
    for def in &defs {
        let fk = def.foreign_key.as_ref();
        insert.values_panic([
            def.name.clone().into(),
            def.declared_type.clone().into(),
            i32::from(def.not_null).into(),
            def.default.clone().into(),
            def.check.clone().into(),
            fk.and_then(|k| k.name.clone()).into(),
            fk.map(|k| k.table.clone()).into(),
            fk.map(|k| k.column.clone()).into(),
            fk.map(|k| k.on_delete.clone()).into(),
        ]);
    }
    conn.execute(&insert).await.map(|_| ())
}

/// The recorded declarations, in `job_agents`, `job_agent_id`, `job_agent_config` order; the
/// baseline's where nothing was recorded (a database migrated before the record existed).
pub async fn recorded(manager: &SchemaManager<'_>) -> Result<Vec<ColumnDecl>, DbErr> {
    let conn = manager.get_connection();
    if !manager.has_table(record_table_name()).await?
        || !table_rows::exist(conn, LegacyColumnRecord::Table).await?
    {
        return baseline(conn).await;
    }
    let query = Query::select()
        .columns(RECORD_COLUMNS)
        .from(LegacyColumnRecord::Table)
        .to_owned();
    let mut defs = vec![];
    for row in conn.query_all(&query).await? {
        defs.push(ColumnDecl::decode(&row)?);
    }
    defs.sort_by_key(|d| LEGACY_COLUMNS.iter().position(|c| *c == d.name));
    Ok(defs)
}

/// Drops the record once the columns are back as they were.
pub async fn forget<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    let drop = Table::drop()
        .table(LegacyColumnRecord::Table)
        .if_exists()
        .to_owned();
    conn.execute(&drop).await.map(|_| ())
}

fn record_table_name() -> String {
    LegacyColumnRecord::Table.to_string()
}

fn record_table() -> TableCreateStatement {
    let text = |name| ColumnDef::new(name).text().null().to_owned();
    Table::create()
        .table(LegacyColumnRecord::Table)
        .if_not_exists()
        .col(
            ColumnDef::new(LegacyColumnRecord::ColumnName)
                .string_len(64)
                .not_null()
                .primary_key(),
        )
        .col(
            ColumnDef::new(LegacyColumnRecord::DeclaredType)
                .text()
                .not_null(),
        )
        .col(
            ColumnDef::new(LegacyColumnRecord::NotNull)
                .integer()
                .not_null(),
        )
        .col(text(LegacyColumnRecord::DefaultExpr))
        .col(text(LegacyColumnRecord::CheckClause))
        .col(text(LegacyColumnRecord::FkName))
        .col(text(LegacyColumnRecord::FkTable))
        .col(text(LegacyColumnRecord::FkColumn))
        .col(text(LegacyColumnRecord::FkOnDelete))
        .to_owned()
}

/// What the baseline migration declares: `job_agent_id` nullable with a foreign key to
/// `job_agent`, the two JSON columns `NOT NULL` with empty defaults.
async fn baseline<C: ConnectionTrait>(conn: &C) -> Result<Vec<ColumnDecl>, DbErr> {
    let backend = backends::of(conn.get_database_backend());
    let json = backend.json_type();
    let json_default = |text: &str| Some(backend.string_literal(text));
    Ok(vec![
        ColumnDecl {
            name: "job_agents".to_owned(),
            declared_type: json.to_owned(),
            not_null: true,
            default: json_default("[]"),
            check: None,
            foreign_key: None,
        },
        ColumnDecl {
            name: "job_agent_id".to_owned(),
            declared_type: column_type(conn, JOB_AGENT, "id").await?,
            not_null: false,
            default: None,
            check: None,
            foreign_key: Some(ForeignKeyDecl {
                name: Some("fk_deployment_job_agent_id".to_owned()),
                table: JOB_AGENT.to_owned(),
                column: "id".to_owned(),
                on_delete: "NO ACTION".to_owned(),
            }),
        },
        ColumnDecl {
            name: "job_agent_config".to_owned(),
            declared_type: json.to_owned(),
            not_null: true,
            default: json_default("{}"),
            check: None,
            foreign_key: None,
        },
    ])
}

/// Whether `deployment` has any of `columns`.
pub(crate) async fn any_present(
    manager: &SchemaManager<'_>,
    columns: &[&str],
) -> Result<bool, DbErr> {
    for column in columns {
        if manager.has_column(DEPLOYMENT, column).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Drops those of `columns` that `deployment` has, in one statement.
pub(crate) async fn drop_present(
    manager: &SchemaManager<'_>,
    columns: &[&str],
) -> Result<(), DbErr> {
    let mut alter = Table::alter();
    alter.table(Deployment::Table);
    let mut any = false;
    for column in columns {
        if manager.has_column(DEPLOYMENT, column).await? {
            alter.drop_column(Alias::new(*column));
            any = true;
        }
    }
    match any {
        true => manager.alter_table(alter).await,
        false => Ok(()),
    }
}
