//! The entities and the migrated schema agree, on every backend.

use entity::{deployment, deployment_job_agent, job_agent, workspace};
use migration::{Migrator, MigratorTrait};
use sea_orm::{ActiveModelTrait, EntityTrait, Iden, IntoActiveModel, Iterable, ModelTrait};
use serde_json::json;
use tests::{TestDb, on_every_backend, read};
use uuid::Uuid;

on_every_backend!(
    every_entity_column_round_trips,
    the_schema_has_no_column_an_entity_lacks,
    links_are_reachable_both_ways,
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
