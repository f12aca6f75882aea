use sea_orm::DbErr;
use sea_orm::prelude::Uuid;

/// Why a query or mutation did not happen. Nothing was written when a mutation returns one.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("deployment {0} does not exist")]
    DeploymentNotFound(Uuid),
    #[error("job agent {0} does not exist")]
    JobAgentNotFound(Uuid),
    #[error("workspace {0} does not exist")]
    WorkspaceNotFound(Uuid),
    #[error(
        "job agent {job_agent_id} belongs to workspace {agent_workspace}, \
         not to the deployment's workspace {deployment_workspace}"
    )]
    CrossWorkspace {
        job_agent_id: Uuid,
        agent_workspace: Uuid,
        deployment_workspace: Uuid,
    },
    #[error("the config for job agent {job_agent_id} is not a JSON object")]
    ConfigNotObject { job_agent_id: Uuid },
    #[error("job agent {0} is listed more than once")]
    DuplicateAgent(Uuid),
    /// The database failed; the original error is kept.
    #[error("database error: {0}")]
    Db(#[from] DbErr),
}
