//! Reads.

use std::collections::HashMap;

use entity::{deployment, deployment_job_agent, job_agent};
use sea_orm::prelude::*;
use sea_orm::{ConnectionTrait, QueryOrder, QuerySelect};
use serde::Serialize;

use crate::ServiceError;
use crate::rules;

/// A job agent of a deployment, with the link's config.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobAgentLink {
    /// The agent.
    pub job_agent: job_agent::Model,
    /// The link's config.
    pub config: Json,
}

/// A deployment run by a job agent, with the link's config.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeploymentLink {
    /// The deployment.
    pub deployment: deployment::Model,
    /// The link's config.
    pub config: Json,
}

/// A deployment with all its job agents, ordered by agent id.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeploymentWithAgents {
    /// The deployment.
    pub deployment: deployment::Model,
    /// Its agents, each with its config.
    pub job_agents: Vec<JobAgentLink>,
}

/// One page of a job agent's deployments; pass `next_after` back to get the next page.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeploymentLinkPage {
    /// The deployments of this page, in id order, each with the link's config.
    pub deployments: Vec<DeploymentLink>,
    /// The last id of this page when more may follow, `None` on the last page.
    pub next_after: Option<Uuid>,
}

/// One page of deployments; pass `next_after` back to get the next page.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeploymentPage {
    /// The deployments of this page, in id order.
    pub deployments: Vec<DeploymentWithAgents>,
    /// The last id of this page when more may follow, `None` on the last page.
    pub next_after: Option<Uuid>,
}

/// Read-only operations.
pub struct Query;

impl Query {
    /// The job agents of a deployment, each with its config, ordered by agent id: one
    /// statement (a second when there are none, to tell an unknown deployment from one
    /// without agents).
    ///
    /// ```
    /// # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doc/example_db.rs"));
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (db, Example { workspace, cluster, runner, api }) = example_db().await?;
    /// for link in service::Query::job_agents_of_deployment(&db, api).await? {
    ///     println!("{} runs it with {}", link.job_agent.name, link.config);
    /// }
    /// let links = service::Query::job_agents_of_deployment(&db, api).await?;
    /// assert_eq!(links[0].job_agent.id, cluster);
    /// assert_eq!(links[0].config["namespace"], "api");
    ///
    /// let unknown = service::Query::job_agents_of_deployment(&db, Uuid::new_v4()).await;
    /// assert!(matches!(unknown, Err(service::ServiceError::DeploymentNotFound(_))));
    /// # Ok(()) }
    /// ```
    pub async fn job_agents_of_deployment<C: ConnectionTrait>(
        db: &C,
        deployment_id: Uuid,
    ) -> Result<Vec<JobAgentLink>, ServiceError> {
        let rows = deployment_job_agent::Entity::find()
            .filter(deployment_job_agent::Column::DeploymentId.eq(deployment_id))
            .find_also_related(job_agent::Entity)
            .order_by_asc(deployment_job_agent::Column::JobAgentId)
            .all(db)
            .await?;
        if rows.is_empty() {
            rules::existing_deployment(db, deployment_id).await?;
        }
        Ok(rows.into_iter().filter_map(agent_link).collect())
    }

    /// The deployments a job agent runs, each with its config, ordered by deployment id.
    /// Looks links up by the `(job_agent_id, deployment_id)` index, never scanning all links.
    /// An agent may run thousands of deployments: where that matters, page through them with
    /// [`Query::deployments_of_job_agent_page`].
    ///
    /// ```
    /// # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doc/example_db.rs"));
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (db, Example { workspace, cluster, runner, api }) = example_db().await?;
    /// let links = service::Query::deployments_of_job_agent(&db, cluster).await?;
    /// assert_eq!(links[0].deployment.name, "api");
    /// assert_eq!(links[0].config["namespace"], "api");
    /// // An agent that runs nothing has no deployments; an unknown one is an error.
    /// assert!(service::Query::deployments_of_job_agent(&db, runner).await?.is_empty());
    /// let unknown = service::Query::deployments_of_job_agent(&db, Uuid::new_v4()).await;
    /// assert!(matches!(unknown, Err(service::ServiceError::JobAgentNotFound(_))));
    /// # Ok(()) }
    /// ```
    pub async fn deployments_of_job_agent<C: ConnectionTrait>(
        db: &C,
        job_agent_id: Uuid,
    ) -> Result<Vec<DeploymentLink>, ServiceError> {
        deployment_links(db, job_agent_id, None, None).await
    }

    /// A page of the deployments a job agent runs, in deployment id order after `after`: one
    /// statement, which reads only this page's links from the index (and a second when the
    /// page is empty, to tell an unknown agent from one with no more deployments).
    ///
    /// ```
    /// # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doc/example_db.rs"));
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (db, Example { workspace, cluster, runner, api }) = example_db().await?;
    /// let mut after = None;
    /// let mut seen = vec![];
    /// loop {
    ///     let page = service::Query::deployments_of_job_agent_page(&db, cluster, after, 100).await?;
    ///     for link in &page.deployments {
    ///         println!("{} with {}", link.deployment.name, link.config);
    ///         seen.push(link.deployment.id);
    ///     }
    ///     match page.next_after {
    ///         Some(last) => after = Some(last),
    ///         None => break,
    ///     }
    /// }
    /// assert_eq!(seen, vec![api]);
    /// # Ok(()) }
    /// ```
    pub async fn deployments_of_job_agent_page<C: ConnectionTrait>(
        db: &C,
        job_agent_id: Uuid,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<DeploymentLinkPage, ServiceError> {
        let limit = limit.max(1);
        let deployments = deployment_links(db, job_agent_id, after, Some(limit)).await?;
        let next_after = next_after(&deployments, limit, |link| link.deployment.id);
        Ok(DeploymentLinkPage {
            deployments,
            next_after,
        })
    }

    /// A page of a workspace's deployments with their agents, in id order after `after`.
    /// Two statements per page whatever its size: the deployments, then all their links
    /// with their agents.
    ///
    /// ```
    /// # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doc/example_db.rs"));
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (db, Example { workspace, cluster, runner, api }) = example_db().await?;
    /// let mut after = None;
    /// loop {
    ///     let page = service::Query::workspace_deployments(&db, workspace, after, 100).await?;
    ///     for item in &page.deployments {
    ///         println!("{}: {} agents", item.deployment.name, item.job_agents.len());
    ///         assert_eq!(item.job_agents[0].job_agent.id, cluster);
    ///     }
    ///     match page.next_after {
    ///         Some(last) => after = Some(last),
    ///         None => break,
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn workspace_deployments<C: ConnectionTrait>(
        db: &C,
        workspace_id: Uuid,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<DeploymentPage, ServiceError> {
        let limit = limit.max(1);
        let mut page = deployment::Entity::find()
            .filter(deployment::Column::WorkspaceId.eq(workspace_id))
            .cursor_by(deployment::Column::Id);
        page.first(limit);
        if let Some(after) = after {
            page.after(after);
        }
        let deployments = page.all(db).await?;
        if deployments.is_empty() {
            rules::existing_workspace(db, workspace_id).await?;
            return Ok(DeploymentPage {
                deployments: vec![],
                next_after: None,
            });
        }
        let mut agents = links_by_deployment(db, deployments.iter().map(|d| d.id)).await?;
        let next_after = next_after(&deployments, limit, |deployment| deployment.id);
        let deployments = deployments
            .into_iter()
            .map(|deployment| DeploymentWithAgents {
                job_agents: agents.remove(&deployment.id).unwrap_or_default(),
                deployment,
            })
            .collect();
        Ok(DeploymentPage {
            deployments,
            next_after,
        })
    }
}

/// Where the next page starts: after this page's last id, when the page is full.
fn next_after<T>(page: &[T], limit: u64, id: impl Fn(&T) -> Uuid) -> Option<Uuid> {
    (page.len() as u64 == limit)
        .then(|| page.last().map(id))
        .flatten()
}

/// An agent's deployments after `after`, at most `limit` of them, in one statement; an
/// unknown agent is an error, an agent without deployments is not.
///
/// Not SeaORM's `cursor_by`: on a select of two entities it also orders by the second
/// one's key (`deployment.id`), and MariaDB then sorts all of the agent's links in a
/// temporary table for every page (seen with `EXPLAIN` on 50,000 links) instead of
/// reading this page's from the `(job_agent_id, deployment_id)` index.
async fn deployment_links<C: ConnectionTrait>(
    db: &C,
    job_agent_id: Uuid,
    after: Option<Uuid>,
    limit: Option<u64>,
) -> Result<Vec<DeploymentLink>, ServiceError> {
    let mut select = deployment_job_agent::Entity::find()
        .filter(deployment_job_agent::Column::JobAgentId.eq(job_agent_id))
        .find_also_related(deployment::Entity)
        .order_by_asc(deployment_job_agent::Column::DeploymentId)
        .limit(limit);
    if let Some(after) = after {
        select = select.filter(deployment_job_agent::Column::DeploymentId.gt(after));
    }
    let rows = select.all(db).await?;
    if rows.is_empty() {
        rules::existing_job_agent(db, job_agent_id).await?;
    }
    let links = rows.into_iter().filter_map(|(link, deployment)| {
        deployment.map(|deployment| DeploymentLink {
            deployment,
            config: link.config,
        })
    });
    Ok(links.collect())
}

/// The links of these deployments with their agents, in one statement.
///
/// SeaORM's entity loader would give the same shape
/// (`deployment::Entity::load().with((deployment_job_agent::Entity, job_agent::Entity))`)
/// in three statements per page, the deployments, their links, then the links' agents
/// (counted in `tests/tests/entities.rs`), and pages only by offset; a cursor page of
/// deployments and this one join cost two.
async fn links_by_deployment<C: ConnectionTrait>(
    db: &C,
    deployments: impl Iterator<Item = Uuid>,
) -> Result<HashMap<Uuid, Vec<JobAgentLink>>, ServiceError> {
    let rows = deployment_job_agent::Entity::find()
        .filter(deployment_job_agent::Column::DeploymentId.is_in(deployments))
        .find_also_related(job_agent::Entity)
        .order_by_asc(deployment_job_agent::Column::DeploymentId)
        .order_by_asc(deployment_job_agent::Column::JobAgentId)
        .all(db)
        .await?;
    let mut by_deployment: HashMap<Uuid, Vec<JobAgentLink>> = HashMap::new();
    for row in rows {
        let deployment_id = row.0.deployment_id;
        if let Some(link) = agent_link(row) {
            by_deployment.entry(deployment_id).or_default().push(link);
        }
    }
    Ok(by_deployment)
}

fn agent_link(
    (link, agent): (deployment_job_agent::Model, Option<job_agent::Model>),
) -> Option<JobAgentLink> {
    agent.map(|job_agent| JobAgentLink {
        job_agent,
        config: link.config,
    })
}
