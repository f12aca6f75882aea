//! Entities and the migrated schema must agree on every backend: column names, types,
//! nullability, primary keys, foreign keys and the reverse-lookup index. A change to one
//! without the other fails here.

use entity::{deployment, deployment_job_agent, job_agent, workspace};
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ColumnTrait, ColumnType, EntityTrait, ForeignKeyAction, Iden, Iterable, PrimaryKeyToColumn,
    RelationTrait, RelationType,
};
use tests::schema::{self, ColumnFacts, ForeignKeyFacts};
use tests::{Backend, TestDb, on_every_backend};

on_every_backend!(entities_and_schema_agree);

/// The type each backend declares for an entity's column type, as its catalogue prints it.
fn declared_type(backend: Backend, column_type: &ColumnType) -> &'static str {
    match (backend, column_type) {
        (Backend::Postgres, ColumnType::Uuid) => "uuid",
        (Backend::MariaDb, ColumnType::Uuid) => "binary(16)",
        (Backend::Sqlite, ColumnType::Uuid) => "uuid_text",
        (Backend::Postgres | Backend::Sqlite, ColumnType::Text) => "text",
        (Backend::MariaDb, ColumnType::Text) => "text",
        (Backend::Postgres, ColumnType::JsonBinary) => "jsonb",
        // MariaDB's JSON is LONGTEXT with a json_valid() check.
        (Backend::MariaDb, ColumnType::JsonBinary) => "longtext",
        (Backend::Sqlite, ColumnType::JsonBinary) => "jsonb_text",
        (backend, other) => panic!("no expected {backend:?} type for {other:?}: extend the test"),
    }
}

fn entity_columns<E: EntityTrait>(backend: Backend) -> Vec<ColumnFacts> {
    let mut columns: Vec<ColumnFacts> = E::Column::iter()
        .map(|column| {
            let def = column.def();
            ColumnFacts {
                name: column.to_string(),
                db_type: declared_type(backend, def.get_column_type()).to_owned(),
                nullable: def.is_null(),
            }
        })
        .collect();
    columns.sort();
    columns
}

fn entity_primary_key<E: EntityTrait>() -> Vec<String> {
    let mut key: Vec<String> = E::PrimaryKey::iter()
        .map(|k| k.into_column().to_string())
        .collect();
    key.sort();
    key
}

/// The foreign keys an entity declares: its `belongs_to` relations.
fn entity_foreign_keys<E: EntityTrait>() -> Vec<ForeignKeyFacts> {
    let table = E::default().table_name().to_owned();
    let mut keys: Vec<ForeignKeyFacts> = E::Relation::iter()
        .map(|relation| relation.def())
        .filter(|def| matches!(def.rel_type, RelationType::HasOne))
        .filter(|def| def.from_tbl.sea_orm_table().to_string() == table)
        .map(|def| ForeignKeyFacts {
            column: def.from_col.to_string(),
            parent: def.to_tbl.sea_orm_table().to_string(),
            parent_column: def.to_col.to_string(),
            cascades: matches!(def.on_delete, Some(ForeignKeyAction::Cascade)),
        })
        .collect();
    keys.sort();
    keys
}

async fn assert_agrees<E: EntityTrait>(db: &TestDb) {
    let table = E::default().table_name().to_owned();
    assert_eq!(
        schema::columns(db, &table).await,
        entity_columns::<E>(db.backend),
        "{table}: columns"
    );
    assert_eq!(
        schema::primary_key(db, &table).await,
        entity_primary_key::<E>(),
        "{table}: key"
    );
    assert_eq!(
        schema::foreign_keys(db, &table).await,
        entity_foreign_keys::<E>(),
        "{table}: FKs"
    );
}

async fn entities_and_schema_agree(db: TestDb) {
    Migrator::up(&db.conn, None).await.expect("up");
    assert_agrees::<workspace::Entity>(&db).await;
    assert_agrees::<job_agent::Entity>(&db).await;
    assert_agrees::<deployment::Entity>(&db).await;
    assert_agrees::<deployment_job_agent::Entity>(&db).await;
    let index = schema::index_columns(
        &db,
        "deployment_job_agent",
        "deployment_job_agent_job_agent_id_idx",
    )
    .await;
    // An agent's links in deployment order: the service pages them from this index.
    assert_eq!(index, ["job_agent_id", "deployment_id"]);
}
