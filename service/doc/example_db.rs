// The database the service's examples run on, pulled into each doctest with `include!`:
// an in-memory SQLite database made by the real migrations, holding one workspace, two job
// agents in it and one deployment linked to the first agent with `{"namespace": "api"}`.
// (A file of its own, so the examples show the call, not the setup.)

use sea_orm::prelude::Uuid;

/// The ids of what [`example_db`] holds.
#[allow(dead_code)]
struct Example {
    workspace: Uuid,
    /// Linked to `api`.
    cluster: Uuid,
    /// Not linked to anything yet.
    runner: Uuid,
    api: Uuid,
}

async fn example_db() -> Result<(sea_orm::DatabaseConnection, Example), Box<dyn std::error::Error>>
{
    use entity::{deployment, deployment_job_agent, job_agent, workspace};
    use migration::{Migrator, MigratorTrait};
    use sea_orm::{ActiveModelTrait, IntoActiveModel};

    let db = sea_orm::Database::connect("sqlite::memory:").await?;
    Migrator::up(&db, None).await?;
    let example = Example {
        workspace: Uuid::new_v4(),
        cluster: Uuid::new_v4(),
        runner: Uuid::new_v4(),
        api: Uuid::new_v4(),
    };
    let name = "platform".to_owned();
    let platform = workspace::Model { id: example.workspace, name };
    platform.into_active_model().insert(&db).await?;
    for (id, name) in [(example.cluster, "prod cluster"), (example.runner, "ci runner")] {
        let workspace_id = Some(example.workspace);
        let agent = job_agent::Model { id, workspace_id, name: name.into() };
        agent.into_active_model().insert(&db).await?;
    }
    let api = deployment::Model {
        id: example.api,
        name: "api".into(),
        resource_selector: None,
        workspace_id: Some(example.workspace),
    };
    api.into_active_model().insert(&db).await?;
    let link = deployment_job_agent::Model {
        deployment_id: example.api,
        job_agent_id: example.cluster,
        config: serde_json::json!({"namespace": "api"}),
    };
    link.into_active_model().insert(&db).await?;
    Ok((db, example))
}
