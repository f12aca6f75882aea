//! What must be the same after a run that was interrupted, raced or repeated as after one
//! uninterrupted run: the links, the rejects and the schema the migrations leave.

use migration::{Migrator, MigratorTrait};

use crate::TestDb;
use crate::read::{self, LinkRow, RejectRow};
use crate::schema::{self, ForeignKeyFacts};

/// What must be the same after a rerun as after an uninterrupted run.
#[derive(Debug, PartialEq)]
pub struct EndState {
    pub links: Vec<LinkRow>,
    pub rejects: Vec<RejectRow>,
    pub deployment_columns: Vec<String>,
    pub join_foreign_keys: Vec<ForeignKeyFacts>,
    pub reverse_index: Vec<String>,
    pub pending_table: Vec<String>,
    pub pending_migrations: usize,
}

/// The end state of `db` as it is now.
pub async fn end_state(db: &TestDb) -> EndState {
    EndState {
        links: read::links(db).await,
        rejects: read::rejects(db).await,
        deployment_columns: read::columns(db, "deployment").await,
        join_foreign_keys: schema::foreign_keys(db, "deployment_job_agent").await,
        reverse_index: schema::index_columns(
            db,
            "deployment_job_agent",
            "deployment_job_agent_job_agent_id_idx",
        )
        .await,
        pending_table: read::columns(db, "deployment_job_agent_backfill_pending").await,
        pending_migrations: Migrator::get_pending_migrations(&db.conn)
            .await
            .unwrap()
            .len(),
    }
}
