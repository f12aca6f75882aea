//! The join table `deployment_job_agent`, its reverse-lookup index, and the table where the
//! backfill records what it could not carry over: created by migration 2, dropped by its
//! `down`.
//!
//! The id columns copy the parents' declared types (`uuid`, `BINARY(16)`, `CHAR(36)`, …), so
//! the foreign keys hold on databases whose legacy tables were built by hand. Every step is
//! idempotent: MariaDB commits DDL as it goes, so a rerun must finish a half-done `create`.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, Statement};

use crate::backends::{self, column_type};
use crate::ownership;
use crate::tables::{
    BackfillReject, DEPLOYMENT, DEPLOYMENT_FOREIGN_KEY, Deployment, DeploymentJobAgent, JOB_AGENT,
    JOB_AGENT_FOREIGN_KEY, JOIN_TABLE, JobAgent, REJECT_DEPLOYMENT_INDEX, job_agent_id_index,
};
use online_migration::context::Context;
use online_migration::locks::{TableLock, lock_in_order, with_lock_retries};

/// Creates the join table and the reject table (see the module's text).
pub(crate) async fn create(ctx: &Context, manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let conn = manager.get_connection();
    let backend = manager.get_database_backend();
    let deployment_id = column_type(conn, DEPLOYMENT, "id").await?;
    let job_agent_id = column_type(conn, JOB_AGENT, "id").await?;

    // A join table someone else filled (another tool's version of this change) is
    // refused, so `down` never drops what it did not create.
    ownership::claim(manager, JOIN_TABLE).await?;
    let join_table = join_table_statements(backend, &deployment_id, &job_agent_id);
    if backends::of(backend).join_table_starts_bare() {
        // A table that references no parent yet locks nothing the application uses.
        for statement in join_table {
            conn.execute_raw(statement).await?;
        }
    } else {
        let what = "creating the join table (locks deployment and job_agent against writes)";
        with_lock_retries(ctx, conn, what, Default::default(), |txn| {
            let join_table = join_table.clone();
            Box::pin(async move {
                let parents = [TableLock::share_row_exclusive(JOB_AGENT)];
                let first = TableLock::share_row_exclusive(DEPLOYMENT);
                lock_in_order(txn, first, &parents).await?;
                for statement in &join_table {
                    txn.execute_raw(statement.clone()).await?;
                }
                Ok(())
            })
        })
        .await?;
    }
    crate::fault::crash_point!("join table created");
    let reject_index = Index::create()
        .name(REJECT_DEPLOYMENT_INDEX)
        .table(BackfillReject::Table)
        .col(BackfillReject::DeploymentId)
        .to_owned();
    for statement in with_index(backend, reject_table(&deployment_id), reject_index) {
        conn.execute_raw(statement).await?;
    }
    Ok(())
}

/// Drops the join table (the reject table stays: it records what the backfill left out).
pub(crate) async fn drop(ctx: &Context, manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let what = "dropping the join table (locks deployment and job_agent)";
    let statement = Table::drop()
        .table(DeploymentJobAgent::Table)
        .if_exists()
        .to_owned();
    with_lock_retries(
        ctx,
        manager.get_connection(),
        what,
        Default::default(),
        |txn| {
            let statement = statement.clone();
            Box::pin(async move {
                let others = [TableLock::access_exclusive(JOB_AGENT)];
                lock_in_order(txn, TableLock::access_exclusive(DEPLOYMENT), &others).await?;
                txn.execute(&statement).await.map(|_| ())
            })
        },
    )
    .await?;
    ownership::forget(manager, JOIN_TABLE).await
}

/// The statements that create the join table. Where it starts bare (PostgreSQL), its foreign
/// keys and reverse index come with the end of the backfill (`backfill::bulk_load::restore`),
/// added without any lock that excludes readers of a parent. (Declaring a foreign key takes a
/// lock on the parent; dropping one to load faster, as this migration once did, takes `ACCESS
/// EXCLUSIVE`, which a hot standby replays and which then waits behind its readers.)
fn join_table_statements(
    backend: DbBackend,
    deployment_id: &str,
    job_agent_id: &str,
) -> Vec<Statement> {
    let table = join_table(deployment_id, job_agent_id);
    match backends::of(backend).join_table_starts_bare() {
        true => vec![backend.build(&table)],
        false => with_index(backend, with_foreign_keys(table), job_agent_id_index()),
    }
}

fn join_table(deployment_id: &str, job_agent_id: &str) -> TableCreateStatement {
    Table::create()
        .table(DeploymentJobAgent::Table)
        .if_not_exists()
        .col(id_column(DeploymentJobAgent::DeploymentId, deployment_id))
        .col(id_column(DeploymentJobAgent::JobAgentId, job_agent_id))
        .col(
            ColumnDef::new(DeploymentJobAgent::Config)
                .json_binary()
                .not_null()
                .default("{}"),
        )
        .primary_key(
            Index::create()
                .col(DeploymentJobAgent::DeploymentId)
                .col(DeploymentJobAgent::JobAgentId),
        )
        .to_owned()
}

fn with_foreign_keys(mut table: TableCreateStatement) -> TableCreateStatement {
    table
        .foreign_key(
            ForeignKey::create()
                .name(DEPLOYMENT_FOREIGN_KEY)
                .from(DeploymentJobAgent::Table, DeploymentJobAgent::DeploymentId)
                .to(Deployment::Table, Deployment::Id)
                .on_delete(ForeignKeyAction::Cascade),
        )
        .foreign_key(
            ForeignKey::create()
                .name(JOB_AGENT_FOREIGN_KEY)
                .from(DeploymentJobAgent::Table, DeploymentJobAgent::JobAgentId)
                .to(JobAgent::Table, JobAgent::Id)
                .on_delete(ForeignKeyAction::Cascade),
        )
        .to_owned()
}

/// One row per legacy value not carried over whole. No foreign key on `deployment_id`: the
/// record outlives the deployment it describes.
fn reject_table(deployment_id: &str) -> TableCreateStatement {
    Table::create()
        .table(BackfillReject::Table)
        .if_not_exists()
        .col(
            ColumnDef::new(BackfillReject::Id)
                .big_integer()
                .not_null()
                .auto_increment()
                .primary_key(),
        )
        .col(id_column(BackfillReject::DeploymentId, deployment_id))
        .col(
            ColumnDef::new(BackfillReject::LegacyColumn)
                .string_len(32)
                .not_null(),
        )
        .col(ColumnDef::new(BackfillReject::EntryIndex).integer().null())
        .col(
            ColumnDef::new(BackfillReject::Entry)
                .json_binary()
                .not_null(),
        )
        .col(
            ColumnDef::new(BackfillReject::Reason)
                .string_len(32)
                .not_null(),
        )
        .to_owned()
}

fn id_column(name: impl IntoIden, declared_type: &str) -> ColumnDef {
    ColumnDef::new_with_type(name, ColumnType::custom(declared_type.to_owned()))
        .not_null()
        .to_owned()
}

/// `table` and `index`, as the statements that create them if missing: the index declared
/// inside `CREATE TABLE` where the backend prefers it (`Backend::index_inside_create_table`),
/// else created right after, in the same step.
fn with_index(
    backend: DbBackend,
    mut table: TableCreateStatement,
    mut index: IndexCreateStatement,
) -> Vec<Statement> {
    match backends::of(backend).index_inside_create_table() {
        true => vec![backend.build(table.index(&mut index))],
        false => vec![backend.build(&table), backend.build(index.if_not_exists())],
    }
}
