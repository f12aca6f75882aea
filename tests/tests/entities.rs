//! The entities and the migrated schema agree, on every backend.

use entity::{deployment, deployment_job_agent, job_agent, workspace};
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityLoaderTrait, EntityTrait, Iden, IntoActiveModel, Iterable,
    LoaderTrait, ModelTrait, QueryFilter, QueryOrder,
};
use serde_json::json;
use tests::{TestDb, on_every_backend, read};
use uuid::Uuid;

on_every_backend!(
    every_entity_column_round_trips,
    the_schema_has_no_column_an_entity_lacks,
    links_are_reachable_both_ways,
    the_loader_gives_each_link_its_config_and_agent,
    related_queries_reach_links_and_agents,
    a_nested_insert_writes_links_with_configs,
);

async fn every_entity_column_round_trips(db: TestDb) {
    Migrator::up(&db.conn, None).await.expect("up");
    let ws = workspace::Model {
        id: Uuid::new_v4(),
        name: "Ops 'n' Dev; ☃".into(),
    };
    let shared_agent = job_agent::Model {
        id: Uuid::new_v4(),
        workspace_id: None,
        name: "shared".into(),
    };
    let agent = job_agent::Model {
        id: Uuid::new_v4(),
        workspace_id: Some(ws.id),
        name: "k8s".into(),
    };
    let with_everything = deployment::Model {
        id: Uuid::new_v4(),
        name: "api".into(),
        resource_selector: Some("env == 'prod'".into()),
        workspace_id: Some(ws.id),
    };
    let with_nothing = deployment::Model {
        id: Uuid::new_v4(),
        name: "bare".into(),
        resource_selector: None,
        workspace_id: None,
    };
    let link = deployment_job_agent::Model {
        deployment_id: with_everything.id,
        job_agent_id: agent.id,
        config: json!({"big": u64::MAX, "small": i64::MIN, "huge": 1.5e300, "u": "héllo ☃ 👩‍🚀", "deep": {"a": [1, null]}}),
    };

    ws.clone()
        .into_active_model()
        .insert(&db.conn)
        .await
        .expect("workspace");
    for model in [shared_agent.clone(), agent.clone()] {
        model
            .into_active_model()
            .insert(&db.conn)
            .await
            .expect("job agent");
    }
    for model in [with_everything.clone(), with_nothing.clone()] {
        model
            .into_active_model()
            .insert(&db.conn)
            .await
            .expect("deployment");
    }
    link.clone()
        .into_active_model()
        .insert(&db.conn)
        .await
        .expect("link");

    assert_eq!(
        found(workspace::Entity::find_by_id(ws.id).one(&db.conn).await),
        ws
    );
    for a in [&shared_agent, &agent] {
        assert_eq!(
            &found(job_agent::Entity::find_by_id(a.id).one(&db.conn).await),
            a
        );
    }
    for d in [&with_everything, &with_nothing] {
        assert_eq!(
            &found(deployment::Entity::find_by_id(d.id).one(&db.conn).await),
            d
        );
    }
    let key = (link.deployment_id, link.job_agent_id);
    assert_eq!(
        found(
            deployment_job_agent::Entity::find_by_id(key)
                .one(&db.conn)
                .await
        ),
        link
    );
}

fn found<T>(result: Result<Option<T>, sea_orm::DbErr>) -> T {
    result.expect("select").expect("the row just written")
}

fn column_names<E: EntityTrait>() -> Vec<String> {
    let mut names: Vec<String> = E::Column::iter().map(|c| c.to_string()).collect();
    names.sort();
    names
}

async fn the_schema_has_no_column_an_entity_lacks(db: TestDb) {
    Migrator::up(&db.conn, None).await.expect("up");
    let tables = [
        ("workspace", column_names::<workspace::Entity>()),
        ("job_agent", column_names::<job_agent::Entity>()),
        ("deployment", column_names::<deployment::Entity>()),
        (
            "deployment_job_agent",
            column_names::<deployment_job_agent::Entity>(),
        ),
    ];
    for (table, entity_columns) in tables {
        assert_eq!(read::columns(&db, table).await, entity_columns, "{table}");
    }
}

async fn links_are_reachable_both_ways(db: TestDb) {
    Migrator::up(&db.conn, None).await.expect("up");
    let d = deployment::Model {
        id: Uuid::new_v4(),
        name: "web".into(),
        resource_selector: None,
        workspace_id: None,
    };
    let a = job_agent::Model {
        id: Uuid::new_v4(),
        workspace_id: None,
        name: "runner".into(),
    };
    d.clone()
        .into_active_model()
        .insert(&db.conn)
        .await
        .unwrap();
    a.clone()
        .into_active_model()
        .insert(&db.conn)
        .await
        .unwrap();
    let link = deployment_job_agent::Model {
        deployment_id: d.id,
        job_agent_id: a.id,
        config: json!({}),
    };
    link.into_active_model().insert(&db.conn).await.unwrap();

    let agents = d
        .find_related(job_agent::Entity)
        .all(&db.conn)
        .await
        .unwrap();
    assert_eq!(agents, vec![a.clone()]);
    let deployments = a
        .find_related(deployment::Entity)
        .all(&db.conn)
        .await
        .unwrap();
    assert_eq!(deployments, vec![d]);
}

/// Two deployments, three agents, three links with configs of their own: what the SeaORM 2
/// path tests read back.
struct Linked {
    web: deployment::Model,
    api: deployment::Model,
    agents: Vec<job_agent::Model>,
}

async fn linked(db: &TestDb) -> Linked {
    Migrator::up(&db.conn, None).await.expect("up");
    let mut agents: Vec<job_agent::Model> = (0..3)
        .map(|n| job_agent::Model {
            id: Uuid::new_v4(),
            workspace_id: None,
            name: format!("runner {n}"),
        })
        .collect();
    agents.sort_by_key(|agent| agent.id);
    for agent in &agents {
        agent
            .clone()
            .into_active_model()
            .insert(&db.conn)
            .await
            .unwrap();
    }
    let [web, api] = ["web", "api"].map(|name| deployment::Model {
        id: Uuid::new_v4(),
        name: name.into(),
        resource_selector: None,
        workspace_id: None,
    });
    for deployment in [&web, &api] {
        deployment
            .clone()
            .into_active_model()
            .insert(&db.conn)
            .await
            .unwrap();
    }
    // web runs on agents 0 and 1, api on agent 2; each link's config names its ends.
    for (deployment, agent) in [(&web, 0), (&web, 1), (&api, 2)] {
        let link = deployment_job_agent::Model {
            deployment_id: deployment.id,
            job_agent_id: agents[agent].id,
            config: json!({"deployment": deployment.name, "agent": agent}),
        };
        link.into_active_model().insert(&db.conn).await.unwrap();
    }
    Linked { web, api, agents }
}

/// The entity loader reaches each link's config with its agent: one statement per hop.
async fn the_loader_gives_each_link_its_config_and_agent(db: TestDb) {
    let Linked { web, api, agents } = linked(&db).await;
    let (conn, statements) = tests::recording_connection(&db).await;
    let loaded = deployment::Entity::load()
        .with((deployment_job_agent::Entity, job_agent::Entity))
        .order_by_asc(deployment::Column::Name)
        .all(&conn)
        .await
        .unwrap();
    assert_eq!(statements.lock().unwrap().len(), 3, "{statements:?}");
    let seen: Vec<(Uuid, Vec<(Uuid, serde_json::Value)>)> = loaded
        .iter()
        .map(|deployment| {
            let mut links: Vec<(Uuid, serde_json::Value)> = (deployment.deployment_job_agents)
                .iter()
                .map(|link| {
                    let agent = link.job_agent.as_ref().expect("the agent is loaded");
                    assert_eq!(agent.id, link.job_agent_id);
                    (agent.id, link.config.clone())
                })
                .collect();
            links.sort_by_key(|(agent, _)| *agent);
            (deployment.id, links)
        })
        .collect();
    let expected = vec![
        (
            api.id,
            vec![(agents[2].id, json!({"deployment": "api", "agent": 2}))],
        ),
        (
            web.id,
            vec![
                (agents[0].id, json!({"deployment": "web", "agent": 0})),
                (agents[1].id, json!({"deployment": "web", "agent": 1})),
            ],
        ),
    ];
    assert_eq!(seen, expected);

    // Across the link, the agents alone.
    let through = deployment::Entity::load()
        .filter_by_id(web.id)
        .with(job_agent::Entity)
        .one(&db.conn)
        .await
        .unwrap()
        .expect("web");
    let mut ids: Vec<Uuid> = through.job_agents.iter().map(|agent| agent.id).collect();
    ids.sort();
    assert_eq!(ids, vec![agents[0].id, agents[1].id]);

    // The other way round: an agent's links with their deployments.
    let runner = job_agent::Entity::load()
        .filter_by_id(agents[2].id)
        .with((deployment_job_agent::Entity, deployment::Entity))
        .one(&db.conn)
        .await
        .unwrap()
        .expect("the agent");
    let links: Vec<_> = runner.deployment_job_agents.iter().collect();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].deployment.as_ref().map(|d| d.id), Some(api.id));
    assert_eq!(links[0].config, json!({"deployment": "api", "agent": 2}));
}

/// `find_with_related` and `load_many` to the link itself (with its config), and
/// `find_related` / `load_many` across it to the agents.
async fn related_queries_reach_links_and_agents(db: TestDb) {
    let Linked { web, api, agents } = linked(&db).await;
    // find_with_related orders by the deployment's key first, to group its rows.
    let mut with_links = deployment::Entity::find()
        .find_with_related(deployment_job_agent::Entity)
        .all(&db.conn)
        .await
        .unwrap();
    with_links.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let configs: Vec<(String, usize)> = with_links
        .iter()
        .map(|(deployment, links)| (deployment.name.clone(), links.len()))
        .collect();
    assert_eq!(configs, vec![("api".into(), 1), ("web".into(), 2)]);
    assert_eq!(
        with_links[0].1[0].config,
        json!({"deployment": "api", "agent": 2})
    );

    let deployments = vec![web.clone(), api.clone()];
    let links = deployments
        .load_many(deployment_job_agent::Entity, &db.conn)
        .await
        .unwrap();
    assert_eq!(links.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 1]);
    let mut through = deployments
        .load_many(job_agent::Entity, &db.conn)
        .await
        .unwrap();
    through[0].sort_by_key(|agent| agent.id);
    assert_eq!(
        through,
        vec![
            vec![agents[0].clone(), agents[1].clone()],
            vec![agents[2].clone()]
        ]
    );
    let of_runner = agents[2]
        .find_related(deployment_job_agent::Entity)
        .all(&db.conn)
        .await
        .unwrap();
    assert_eq!(of_runner.len(), 1);
    assert_eq!(of_runner[0].deployment_id, api.id);
}

/// A nested active model inserts a deployment with its links and their configs at once.
async fn a_nested_insert_writes_links_with_configs(db: TestDb) {
    let Linked { agents, .. } = linked(&db).await;
    let id = Uuid::new_v4();
    deployment::ActiveModel::builder()
        .set_id(id)
        .set_name("worker")
        .add_deployment_job_agent(
            deployment_job_agent::ActiveModel::builder()
                .set_job_agent_id(agents[0].id)
                .set_config(json!({"replicas": 2})),
        )
        .add_deployment_job_agent(
            deployment_job_agent::ActiveModel::builder()
                .set_job_agent_id(agents[1].id)
                .set_config(json!({})),
        )
        .insert(&db.conn)
        .await
        .unwrap();
    let mut links = deployment_job_agent::Entity::find()
        .filter(deployment_job_agent::Column::DeploymentId.eq(id))
        .all(&db.conn)
        .await
        .unwrap();
    links.sort_by_key(|link| link.job_agent_id);
    let got: Vec<(Uuid, serde_json::Value)> = links
        .into_iter()
        .map(|link| (link.job_agent_id, link.config))
        .collect();
    assert_eq!(
        got,
        vec![
            (agents[0].id, json!({"replicas": 2})),
            (agents[1].id, json!({}))
        ]
    );
}
