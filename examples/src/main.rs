//! Lists a workspace's deployments with their job agents, as an application would.
//!
//! It creates `./example.sqlite` through the migrations (or uses the database named by
//! `DATABASE_URL`), adds a workspace with two agents and three deployments through the
//! service crate, then pages through them.
//!
//! ```sh
//! cargo run -p examples --bin list-deployments
//! ```

use entity::{job_agent, workspace};
use migration::{Migrator, MigratorTrait};
use sea_orm::prelude::Uuid;
use sea_orm::{ActiveModelTrait, Database, DatabaseConnection, IntoActiveModel};
use serde_json::json;
use service::{AgentAssignment, Mutation, NewDeployment, Query};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "sqlite://./example.sqlite?mode=rwc".to_owned());
    let db = Database::connect(&url).await?;
    Migrator::up(&db, None).await?;

    let platform = seed(&db).await?;
    let mut after = None;
    loop {
        let page = Query::workspace_deployments(&db, platform, after, 2).await?;
        for item in &page.deployments {
            println!("{} ({})", item.deployment.name, item.deployment.id);
            for link in &item.job_agents {
                println!("  runs on {} with {}", link.job_agent.name, link.config);
            }
        }
        match page.next_after {
            Some(last) => after = Some(last),
            None => break,
        }
    }
    Ok(())
}

/// A workspace with two agents and three deployments; returns the workspace id.
async fn seed(db: &DatabaseConnection) -> Result<Uuid, Box<dyn std::error::Error>> {
    let platform = workspace::Model {
        id: Uuid::new_v4(),
        name: "platform".into(),
    };
    platform.clone().into_active_model().insert(db).await?;
    let mut agents = vec![];
    for name in ["prod cluster", "staging cluster"] {
        let agent = job_agent::Model {
            id: Uuid::new_v4(),
            workspace_id: Some(platform.id),
            name: name.into(),
        };
        agents.push(agent.clone().into_active_model().insert(db).await?.id);
    }
    for (name, namespaces) in [("api", 2), ("web", 1), ("batch", 0)] {
        let deployment = NewDeployment {
            name: name.into(),
            resource_selector: None,
            workspace_id: Some(platform.id),
        };
        let assignments = agents
            .iter()
            .take(namespaces)
            .map(|&job_agent_id| AgentAssignment {
                job_agent_id,
                config: json!({"namespace": name}),
            })
            .collect();
        Mutation::create_deployment(db, deployment, assignments).await?;
    }
    Ok(platform.id)
}
