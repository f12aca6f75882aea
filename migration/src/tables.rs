//! Table and column names, frozen here for the migrations.
//!
//! The migrations never import the `entity` crate: they must mean the same thing forever,
//! whatever the entities become. These identifiers are the only shared vocabulary.

use online_migration::ledger::Ledger;
use sea_orm_migration::prelude::*;

/// The tables' names as text, for statements written out in full (triggers, table locks,
/// catalogue lookups). Each is its iden's name below (a test checks they agree).
pub const DEPLOYMENT: &str = "deployment";
pub const JOB_AGENT: &str = "job_agent";
pub const JOIN_TABLE: &str = "deployment_job_agent";
pub const PENDING_TABLE: &str = "deployment_job_agent_backfill_pending";
pub const REJECT_TABLE: &str = "deployment_job_agent_backfill_reject";

#[derive(DeriveIden, Clone, Copy)]
pub enum Workspace {
    Table,
    Id,
    Name,
}

#[derive(DeriveIden, Clone, Copy)]
pub enum JobAgent {
    Table,
    Id,
    WorkspaceId,
    Name,
}

#[derive(DeriveIden, Clone, Copy)]
pub enum Deployment {
    Table,
    Id,
    Name,
    JobAgentId,
    JobAgentConfig,
    ResourceSelector,
    WorkspaceId,
    JobAgents,
}

#[derive(DeriveIden, Clone, Copy)]
pub enum DeploymentJobAgent {
    Table,
    DeploymentId,
    JobAgentId,
    Config,
}

/// Where the backfill records every legacy value it did not carry over whole.
#[derive(DeriveIden, Clone, Copy)]
pub enum BackfillReject {
    #[sea_orm(iden = "deployment_job_agent_backfill_reject")]
    Table,
    Id,
    DeploymentId,
    LegacyColumn,
    EntryIndex,
    Entry,
    Reason,
}

/// Deployments written while the migration runs, caught up before the legacy columns go.
#[derive(DeriveIden, Clone, Copy)]
pub enum BackfillPending {
    #[sea_orm(iden = "deployment_job_agent_backfill_pending")]
    Table,
    DeploymentId,
}

/// The capture's triggers on `deployment`: one for inserts, one for updates that change what
/// the rules read. (PostgreSQL names its insert trigger after the function both run.)
pub const CAPTURE_INSERT_TRIGGER: &str = "deployment_job_agent_backfill_capture_insert";
pub const CAPTURE_UPDATE_TRIGGER: &str = "deployment_job_agent_backfill_capture_update";
/// PostgreSQL: the capture's trigger function, and the name of its insert trigger.
pub const CAPTURE_FUNCTION: &str = "deployment_job_agent_backfill_capture";

/// The expand phase's triggers: legacy writes to the links (on `deployment`, one for inserts
/// and one for updates that change what the rules read), and link writes to the legacy
/// columns (on the join table). Each backend names its trigger functions or procedures
/// after them.
pub const SYNC_FROM_LEGACY_INSERT_TRIGGER: &str = "deployment_job_agent_sync_from_legacy_insert";
pub const SYNC_FROM_LEGACY_UPDATE_TRIGGER: &str = "deployment_job_agent_sync_from_legacy_update";
pub const SYNC_TO_LEGACY_TRIGGER: &str = "deployment_job_agent_sync_to_legacy";
/// Where a trigger has one event (MariaDB, SQLite), the join table's three: insert, update,
/// delete.
pub const SYNC_TO_LEGACY_TRIGGERS: [&str; 3] = [
    "deployment_job_agent_sync_to_legacy_insert",
    "deployment_job_agent_sync_to_legacy_update",
    "deployment_job_agent_sync_to_legacy_delete",
];
/// Gives a deployment inserted without the legacy columns (by the new version) the legacy
/// shape of "no agents"; its routine, where the backend needs one, has the same name.
pub const SYNC_LEGACY_DEFAULTS_TRIGGER: &str = "deployment_job_agent_sync_legacy_defaults";
/// The routine both legacy-side triggers run (the rules), and the one the links' trigger runs.
pub const SYNC_FROM_LEGACY_ROUTINE: &str = "deployment_job_agent_sync_from_legacy";
pub const SYNC_TO_LEGACY_ROUTINE: &str = "deployment_job_agent_sync_to_legacy";
/// The rules' helper routines, by what they do (each backend defines those it needs).
pub const RULE_HELPER_PREFIX: &str = "deployment_job_agent_rule_";
/// Set while the sync (or the migration itself) writes one side from the other, so the
/// other side's trigger does not write back: a loop guard, never seen by the application
/// (a setting on PostgreSQL, a session variable on MariaDB, a table on SQLite).
pub const SYNC_GUARD: &str = "deployment_job_agent_syncing";

/// The join table's foreign keys, to `deployment` and to `job_agent`.
pub const DEPLOYMENT_FOREIGN_KEY: &str = "fk_deployment_job_agent_deployment";
pub const JOB_AGENT_FOREIGN_KEY: &str = "fk_deployment_job_agent_job_agent";

/// Index names, so `down` drops exactly what `up` created.
pub const JOB_AGENT_ID_INDEX: &str = "deployment_job_agent_job_agent_id_idx";
pub const REJECT_DEPLOYMENT_INDEX: &str = "deployment_job_agent_backfill_reject_deployment_id_idx";

/// The join table's reverse-lookup index: an agent's links in deployment order, so the
/// deployments of an agent are read (and paged) in order without a sort, and deleting an
/// agent finds its links without scanning the table.
pub fn job_agent_id_index() -> IndexCreateStatement {
    Index::create()
        .name(JOB_AGENT_ID_INDEX)
        .table(DeploymentJobAgent::Table)
        .col(DeploymentJobAgent::JobAgentId)
        .col(DeploymentJobAgent::DeploymentId)
        .to_owned()
}

/// The legacy columns the drop migration removes and its `down` gives back.
pub const LEGACY_COLUMNS: [&str; 3] = ["job_agents", "job_agent_id", "job_agent_config"];

/// The legacy columns under the names MariaDB's drop step gives them while it catches up the
/// last writes, in the order of [`LEGACY_COLUMNS`]: an application statement that names
/// the legacy columns fails from then on, as it will once they are dropped.
pub const RETIRED_LEGACY_COLUMNS: [&str; 3] = [
    "retired_job_agents",
    "retired_job_agent_id",
    "retired_job_agent_config",
];

/// Which names the legacy columns go by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegacyNames {
    /// As the application knows them.
    Live,
    /// After MariaDB's drop step renamed them ([`RETIRED_LEGACY_COLUMNS`]).
    Retired,
}

impl LegacyNames {
    /// The name of `column` (one of [`LEGACY_COLUMNS`]).
    pub fn of(self, column: Deployment) -> Alias {
        let live = match column {
            Deployment::JobAgents => 0,
            Deployment::JobAgentId => 1,
            Deployment::JobAgentConfig => 2,
            _ => unreachable!("not a legacy column"),
        };
        Alias::new(match self {
            LegacyNames::Live => LEGACY_COLUMNS[live],
            LegacyNames::Retired => RETIRED_LEGACY_COLUMNS[live],
        })
    }
}

/// How each legacy column was declared when the drop migration removed it, so its `down`
/// gives back exactly that (type, nullability, default, foreign key), not what the baseline
/// would have created.
#[derive(DeriveIden, Clone, Copy)]
pub enum LegacyColumnRecord {
    #[sea_orm(iden = "deployment_job_agent_legacy_column")]
    Table,
    ColumnName,
    DeclaredType,
    NotNull,
    DefaultExpr,
    CheckClause,
    FkName,
    FkTable,
    FkColumn,
    FkOnDelete,
}

/// Where an unfinished backfill stopped (see `backfill::resume`).
#[derive(DeriveIden, Clone, Copy)]
pub enum BackfillProgress {
    #[sea_orm(iden = "deployment_job_agent_backfill_progress")]
    Table,
    Step,
    LastDeploymentId,
}

/// The tables the migrations created (the rest existed before them and are the
/// application's, or another tool's): a `down` drops only these (see `ownership`).
#[derive(DeriveIden, Clone, Copy)]
pub enum CreatedTable {
    #[sea_orm(iden = "deployment_job_agent_created_table")]
    Table,
    TableName,
}

/// Where these migrations keep their own records (the engine's lock and phase record).
/// They outlive any version of this code: migrators of a rolling deploy agree on them.
pub const LEDGER: Ledger = Ledger {
    lock_table: "deployment_job_agent_migrator",
    phase_table: "deployment_job_agent_phase",
    // "dja_migr" in ASCII.
    advisory_key: 0x646a_615f_6d69_6772,
    server_lock_name: "deployment_job_agent_migrator",
};

/// Tables whose rows are the migration's own bookkeeping, never an operator's data: the
/// migrator's list of applied migrations, the record of the tables the migrations created, the
/// legacy columns' declarations (the drop's `down` needs them, nothing else), and the
/// capture's list of deployment ids to catch up, where an unfinished backfill stopped, who
/// holds the migrator lock, which step each table is in. The
/// reject table is not among them: it is the only record of legacy values the backfill could
/// not carry over.
pub const BOOKKEEPING_TABLES: [&str; 7] = [
    "seaql_migrations",
    "deployment_job_agent_created_table",
    "deployment_job_agent_legacy_column",
    PENDING_TABLE,
    "deployment_job_agent_backfill_progress",
    "deployment_job_agent_migrator",
    "deployment_job_agent_phase",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_as_text_are_the_idens_names() {
        assert_eq!(Deployment::Table.to_string(), DEPLOYMENT);
        assert_eq!(JobAgent::Table.to_string(), JOB_AGENT);
        assert_eq!(DeploymentJobAgent::Table.to_string(), JOIN_TABLE);
        assert_eq!(BackfillPending::Table.to_string(), PENDING_TABLE);
        assert_eq!(BackfillReject::Table.to_string(), REJECT_TABLE);
        assert_eq!(CreatedTable::Table.to_string(), BOOKKEEPING_TABLES[1]);
        assert_eq!(LegacyColumnRecord::Table.to_string(), BOOKKEEPING_TABLES[2]);
        assert_eq!(BackfillProgress::Table.to_string(), BOOKKEEPING_TABLES[4]);
        assert_eq!(LEDGER.lock_table, BOOKKEEPING_TABLES[5]);
        assert_eq!(LEDGER.phase_table, BOOKKEEPING_TABLES[6]);
    }
}
