//! Writes. Each runs in one transaction and writes nothing when any rule fails.

use std::collections::HashMap;

use crate::input::{AgentAssignment, NewDeployment};
use crate::query::{DeploymentWithAgents, JobAgentLink};
use crate::{ServiceError, rules};
use entity::{deployment, deployment_job_agent, job_agent};
use sea_orm::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ConnectionTrait, IntoActiveModel, SqliteTransactionMode, TransactionOptions,
    TransactionSession, TransactionTrait,
};

/// Operations that change data.
pub struct Mutation;

impl Mutation {
    /// Links an agent to a deployment with `config`, or replaces that link's config.
    ///
    /// ```
    /// # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doc/example_db.rs"));
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (db, Example { workspace, cluster, runner, api }) = example_db().await?;
    /// use service::{AgentAssignment, Mutation};
    /// let config = serde_json::json!({"namespace": "ci"});
    /// let link = Mutation::attach_job_agent(&db, api, AgentAssignment { job_agent_id: runner, config }).await?;
    /// assert_eq!((link.deployment_id, link.job_agent_id), (api, runner));
    /// // Attaching it again replaces the config.
    /// let config = serde_json::json!({"namespace": "ci-2"});
    /// Mutation::attach_job_agent(&db, api, AgentAssignment { job_agent_id: runner, config }).await?;
    /// let links = service::Query::job_agents_of_deployment(&db, api).await?;
    /// assert_eq!(links.len(), 2);
    /// # Ok(()) }
    /// ```
    pub async fn attach_job_agent<C: ConnectionTrait + TransactionTrait>(
        db: &C,
        deployment_id: Uuid,
        assignment: AgentAssignment,
    ) -> Result<deployment_job_agent::Model, ServiceError> {
        let txn = begin_write(db).await?;
        let deployment = rules::locked_deployment(&txn, deployment_id).await?;
        rules::config_is_object(&assignment)?;
        rules::usable_agents(&txn, deployment.workspace_id, &[assignment.job_agent_id]).await?;
        let link = link(deployment_id, assignment);
        deployment_job_agent::Entity::insert(link.clone().into_active_model())
            .on_conflict(
                OnConflict::columns([
                    deployment_job_agent::Column::DeploymentId,
                    deployment_job_agent::Column::JobAgentId,
                ])
                .update_column(deployment_job_agent::Column::Config)
                .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
        txn.commit().await?;
        Ok(link)
    }

    /// Unlinks an agent from a deployment; says whether there was a link.
    ///
    /// ```
    /// # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doc/example_db.rs"));
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (db, Example { workspace, cluster, runner, api }) = example_db().await?;
    /// assert!(service::Mutation::detach_job_agent(&db, api, cluster).await?);
    /// assert!(!service::Mutation::detach_job_agent(&db, api, cluster).await?);
    /// assert!(service::Query::job_agents_of_deployment(&db, api).await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn detach_job_agent<C: ConnectionTrait>(
        db: &C,
        deployment_id: Uuid,
        job_agent_id: Uuid,
    ) -> Result<bool, ServiceError> {
        let deleted = deployment_job_agent::Entity::delete_by_id((deployment_id, job_agent_id))
            .exec(db)
            .await?;
        Ok(deleted.rows_affected > 0)
    }

    /// Makes `assignments` the deployment's whole agent set. Concurrent calls on the same
    /// deployment are serialised: the result is exactly one caller's set.
    ///
    /// ```
    /// # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doc/example_db.rs"));
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (db, Example { workspace, cluster, runner, api }) = example_db().await?;
    /// use service::{AgentAssignment, Mutation, ServiceError};
    /// let set = vec![AgentAssignment { job_agent_id: runner, config: serde_json::json!({}) }];
    /// let links = Mutation::replace_job_agents(&db, api, set).await?;
    /// assert_eq!(links.len(), 1);
    /// let agents = service::Query::job_agents_of_deployment(&db, api).await?;
    /// assert_eq!(agents[0].job_agent.id, runner);
    ///
    /// // The same agent twice is refused, and the set stays as it was.
    /// let twice = vec![
    ///     AgentAssignment { job_agent_id: cluster, config: serde_json::json!({}) },
    ///     AgentAssignment { job_agent_id: cluster, config: serde_json::json!({}) },
    /// ];
    /// let refused = Mutation::replace_job_agents(&db, api, twice).await;
    /// assert!(matches!(refused, Err(ServiceError::DuplicateAgent(id)) if id == cluster));
    /// assert_eq!(service::Query::job_agents_of_deployment(&db, api).await?, agents);
    /// # Ok(()) }
    /// ```
    pub async fn replace_job_agents<C: ConnectionTrait + TransactionTrait>(
        db: &C,
        deployment_id: Uuid,
        assignments: Vec<AgentAssignment>,
    ) -> Result<Vec<deployment_job_agent::Model>, ServiceError> {
        let txn = begin_write(db).await?;
        let deployment = rules::locked_deployment(&txn, deployment_id).await?;
        check_assignments(&txn, deployment.workspace_id, &assignments).await?;
        // Not a nested active model's `Replace`: SeaORM marks replacing related rows
        // unstable (its semantics may change in a 2.x release), and it writes each link with
        // an insert of its own; the old set goes in one delete, the new in one insert.
        deployment_job_agent::Entity::delete_many()
            .filter(deployment_job_agent::Column::DeploymentId.eq(deployment_id))
            .exec(&txn)
            .await?;
        let links = insert_links(&txn, deployment_id, assignments).await?;
        txn.commit().await?;
        Ok(links)
    }

    /// Creates a deployment linked to `assignments`, all or nothing.
    ///
    /// ```
    /// # include!(concat!(env!("CARGO_MANIFEST_DIR"), "/doc/example_db.rs"));
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (db, Example { workspace, cluster, runner, api }) = example_db().await?;
    /// use service::{AgentAssignment, Mutation, NewDeployment, ServiceError};
    /// let worker = NewDeployment {
    ///     name: "worker".into(),
    ///     resource_selector: Some("kind == 'Pod'".into()),
    ///     workspace_id: Some(workspace),
    /// };
    /// let set = vec![AgentAssignment { job_agent_id: cluster, config: serde_json::json!({"replicas": 3}) }];
    /// let created = Mutation::create_deployment(&db, worker.clone(), set).await?;
    /// assert_eq!(created.job_agents[0].config["replicas"], 3);
    ///
    /// // A config that is not an object: refused, and no deployment is created.
    /// let set = vec![AgentAssignment { job_agent_id: cluster, config: serde_json::json!("3") }];
    /// let refused = Mutation::create_deployment(&db, worker, set).await;
    /// assert!(matches!(refused, Err(ServiceError::ConfigNotObject { .. })));
    /// let page = service::Query::workspace_deployments(&db, workspace, None, 10).await?;
    /// assert_eq!(page.deployments.len(), 2);
    /// # Ok(()) }
    /// ```
    pub async fn create_deployment<C: ConnectionTrait + TransactionTrait>(
        db: &C,
        new: NewDeployment,
        assignments: Vec<AgentAssignment>,
    ) -> Result<DeploymentWithAgents, ServiceError> {
        let txn = begin_write(db).await?;
        if let Some(workspace_id) = new.workspace_id {
            rules::existing_workspace(&txn, workspace_id).await?;
        }
        let mut agents = check_assignments(&txn, new.workspace_id, &assignments).await?;
        let deployment = deployment::Model {
            id: Uuid::new_v4(),
            name: new.name,
            resource_selector: new.resource_selector,
            workspace_id: new.workspace_id,
        };
        // Not a nested `ActiveModel::builder().add_deployment_job_agent(…).insert()`, which
        // does the same in 1 + N statements (2 + 2N on MariaDB, reading each row back): the
        // deployment, then every link in one multi-row insert, is two.
        deployment::Entity::insert(deployment.clone().into_active_model())
            .exec_without_returning(&txn)
            .await?;
        let mut links = insert_links(&txn, deployment.id, assignments).await?;
        txn.commit().await?;
        links.sort_by_key(|link| link.job_agent_id);
        let job_agents = links
            .into_iter()
            .filter_map(|link| {
                let job_agent = agents.remove(&link.job_agent_id)?;
                Some(JobAgentLink {
                    job_agent,
                    config: link.config,
                })
            })
            .collect();
        Ok(DeploymentWithAgents {
            deployment,
            job_agents,
        })
    }
}

/// Every rule on a set of agents for a deployment of `workspace`; returns the agents.
async fn check_assignments<C: ConnectionTrait>(
    db: &C,
    workspace: Option<Uuid>,
    assignments: &[AgentAssignment],
) -> Result<HashMap<Uuid, job_agent::Model>, ServiceError> {
    rules::agents_unique(assignments)?;
    assignments.iter().try_for_each(rules::config_is_object)?;
    let ids: Vec<Uuid> = assignments.iter().map(|a| a.job_agent_id).collect();
    rules::usable_agents(db, workspace, &ids).await
}

async fn insert_links<C: ConnectionTrait>(
    db: &C,
    deployment_id: Uuid,
    assignments: Vec<AgentAssignment>,
) -> Result<Vec<deployment_job_agent::Model>, ServiceError> {
    let links: Vec<deployment_job_agent::Model> = assignments
        .into_iter()
        .map(|assignment| link(deployment_id, assignment))
        .collect();
    if !links.is_empty() {
        let rows = links
            .iter()
            .cloned()
            .map(IntoActiveModel::into_active_model);
        deployment_job_agent::Entity::insert_many(rows)
            .exec_without_returning(db)
            .await?;
    }
    Ok(links)
}

fn link(deployment_id: Uuid, assignment: AgentAssignment) -> deployment_job_agent::Model {
    deployment_job_agent::Model {
        deployment_id,
        job_agent_id: assignment.job_agent_id,
        config: assignment.config,
    }
}

/// A transaction that writes. On SQLite it takes the write lock at `BEGIN`, so two writers
/// never both read and then deadlock on upgrading their locks.
async fn begin_write<C: TransactionTrait>(db: &C) -> Result<C::Transaction, DbErr> {
    let options = TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    };
    db.begin_with_options(options).await
}
