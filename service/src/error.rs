use sea_orm::DbErr;
use sea_orm::prelude::Uuid;

/// Why a query or mutation did not happen. Nothing was written when a mutation returns one.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No deployment has this id.
    #[error("deployment {0} does not exist")]
    DeploymentNotFound(Uuid),
    /// No job agent has this id.
    #[error("job agent {0} does not exist")]
    JobAgentNotFound(Uuid),
    /// No workspace has this id.
    #[error("workspace {0} does not exist")]
    WorkspaceNotFound(Uuid),
    #[error(
        "job agent {job_agent_id} belongs to workspace {agent_workspace}, \
         not to the deployment's workspace {deployment_workspace}"
    )]
    /// The agent belongs to another workspace than the deployment.
    CrossWorkspace {
        /// The agent.
        job_agent_id: Uuid,
        /// The agent's workspace.
        agent_workspace: Uuid,
        /// The deployment's workspace.
        deployment_workspace: Uuid,
    },
    /// A config that is not a JSON object.
    #[error("the config for job agent {job_agent_id} is not a JSON object")]
    ConfigNotObject {
        /// The agent the config was for.
        job_agent_id: Uuid,
    },
    /// The same agent twice in one set.
    #[error("job agent {0} is listed more than once")]
    DuplicateAgent(Uuid),
    /// The database failed; the original error is kept.
    #[error("database error: {0}")]
    Db(#[from] DbErr),
}
