//! The service crate on every backend: each query and mutation, each rule's error, and the
//! "nothing written" promise behind it.

use entity::{deployment, deployment_job_agent, job_agent, workspace};
use migration::{Migrator, MigratorTrait};
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, ModelTrait, PaginatorTrait};
use serde_json::{Value as Json, json};
use service::{AgentAssignment, Mutation, NewDeployment, Query, ServiceError};
use std::sync::Mutex;
use tests::{TestDb, on_every_backend, recording_connection};
use uuid::Uuid;

on_every_backend!(
    attach_links_then_replaces_the_config,
    attach_refuses_what_the_rules_forbid_and_writes_nothing,
    detach_says_whether_a_link_existed,
    replace_sets_exactly_the_given_agents,
    replace_refuses_bad_sets_and_keeps_the_old_one,
    create_deployment_with_agents_is_all_or_nothing,
    agents_of_a_deployment_and_deployments_of_an_agent,
    workspace_pages_list_each_deployment_once,
    an_agents_deployments_page_in_order_one_statement_each,
    deleting_a_deployment_or_an_agent_removes_its_links,
    concurrent_replaces_leave_exactly_one_callers_set,
    each_call_sends_its_statements_and_no_more,
);

/// Two workspaces; agents `a1`, `a2` in `w1`, `a3` in `w2`, `shared` in none; deployment
/// `d1` in `w1`, `loose` in no workspace.
struct World {
    w1: Uuid,
    w2: Uuid,
    a1: Uuid,
    a2: Uuid,
    a3: Uuid,
    shared: Uuid,
    d1: Uuid,
    loose: Uuid,
}

async fn world(db: &TestDb) -> World {
    Migrator::up(&db.conn, None).await.expect("up");
    let w = World {
        w1: Uuid::new_v4(),
        w2: Uuid::new_v4(),
        a1: Uuid::from_u128(1),
        a2: Uuid::from_u128(2),
        a3: Uuid::from_u128(3),
        shared: Uuid::from_u128(4),
        d1: Uuid::new_v4(),
        loose: Uuid::new_v4(),
    };
    for id in [w.w1, w.w2] {
        let name = "w".to_owned();
        workspace::Model { id, name }
            .into_active_model()
            .insert(&db.conn)
            .await
            .unwrap();
    }
    for (id, workspace_id) in [
        (w.a1, Some(w.w1)),
        (w.a2, Some(w.w1)),
        (w.a3, Some(w.w2)),
        (w.shared, None),
    ] {
        let agent = job_agent::Model {
            id,
            workspace_id,
            name: format!("agent {id}"),
        };
        agent.into_active_model().insert(&db.conn).await.unwrap();
    }
    for (id, workspace_id) in [(w.d1, Some(w.w1)), (w.loose, None)] {
        deployment(id, workspace_id)
            .into_active_model()
            .insert(&db.conn)
            .await
            .unwrap();
    }
    w
}

/// Inserts a new deployment into `workspace`; returns its id.
async fn new_deployment(db: &TestDb, workspace: Uuid) -> Uuid {
    let id = Uuid::new_v4();
    deployment(id, Some(workspace))
        .into_active_model()
        .insert(&db.conn)
        .await
        .unwrap();
    id
}

fn deployment(id: Uuid, workspace_id: Option<Uuid>) -> deployment::Model {
    deployment::Model {
        id,
        name: format!("deployment {id}"),
        resource_selector: None,
        workspace_id,
    }
}

fn assign(job_agent_id: Uuid, config: Json) -> AgentAssignment {
    AgentAssignment {
        job_agent_id,
        config,
    }
}

/// What `call` returns, and how many statements it sent on the recording connection.
async fn counted<T>(statements: &Mutex<Vec<String>>, call: impl Future<Output = T>) -> (T, usize) {
    let before = statements.lock().unwrap().len();
    let out = call.await;
    (out, statements.lock().unwrap().len() - before)
}

/// Every link in the database, as (deployment, agent, config), sorted.
async fn all_links(db: &TestDb) -> Vec<(Uuid, Uuid, Json)> {
    let mut links: Vec<_> = deployment_job_agent::Entity::find()
        .all(&db.conn)
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.deployment_id, l.job_agent_id, l.config))
        .collect();
    links.sort_by_key(|l| (l.0, l.1));
    links
}

async fn attach_links_then_replaces_the_config(db: TestDb) {
    let w = world(&db).await;
    let link = Mutation::attach_job_agent(&db.conn, w.d1, assign(w.a1, json!({"v": 1})))
        .await
        .unwrap();
    assert_eq!(link.config, json!({"v": 1}));
    Mutation::attach_job_agent(&db.conn, w.d1, assign(w.a1, json!({"v": 2})))
        .await
        .unwrap();
    Mutation::attach_job_agent(&db.conn, w.d1, assign(w.shared, json!({})))
        .await
        .unwrap();
    let mut expected = vec![(w.d1, w.a1, json!({"v": 2})), (w.d1, w.shared, json!({}))];
    expected.sort_by_key(|l| (l.0, l.1));
    assert_eq!(all_links(&db).await, expected);
}

async fn attach_refuses_what_the_rules_forbid_and_writes_nothing(db: TestDb) {
    let w = world(&db).await;
    Mutation::attach_job_agent(&db.conn, w.d1, assign(w.a1, json!({"keep": true})))
        .await
        .unwrap();
    let before = all_links(&db).await;
    let missing = Uuid::new_v4();

    let error = Mutation::attach_job_agent(&db.conn, missing, assign(w.a1, json!({}))).await;
    assert!(
        matches!(error, Err(ServiceError::DeploymentNotFound(id)) if id == missing),
        "{error:?}"
    );
    let error = Mutation::attach_job_agent(&db.conn, w.d1, assign(missing, json!({}))).await;
    assert!(
        matches!(error, Err(ServiceError::JobAgentNotFound(id)) if id == missing),
        "{error:?}"
    );
    let error = Mutation::attach_job_agent(&db.conn, w.d1, assign(w.a3, json!({}))).await;
    assert!(
        matches!(error, Err(ServiceError::CrossWorkspace { job_agent_id, agent_workspace, deployment_workspace })
            if job_agent_id == w.a3 && agent_workspace == w.w2 && deployment_workspace == w.w1),
        "{error:?}"
    );
    for config in [json!([1]), json!("x"), json!(null), json!(7)] {
        let error = Mutation::attach_job_agent(&db.conn, w.d1, assign(w.a1, config.clone())).await;
        assert!(
            matches!(error, Err(ServiceError::ConfigNotObject { job_agent_id }) if job_agent_id == w.a1),
            "{config}"
        );
    }
    assert_eq!(all_links(&db).await, before);

    // A deployment without a workspace may use any agent; hostile text is stored verbatim.
    let hostile = json!({"cmd": "'; DROP TABLE deployment; --", "q": "\"\\;"});
    Mutation::attach_job_agent(&db.conn, w.loose, assign(w.a3, hostile.clone()))
        .await
        .unwrap();
    let links = Query::job_agents_of_deployment(&db.conn, w.loose)
        .await
        .unwrap();
    assert_eq!(links[0].config, hostile);
}

async fn detach_says_whether_a_link_existed(db: TestDb) {
    let w = world(&db).await;
    Mutation::attach_job_agent(&db.conn, w.d1, assign(w.a1, json!({})))
        .await
        .unwrap();
    Mutation::attach_job_agent(&db.conn, w.d1, assign(w.a2, json!({})))
        .await
        .unwrap();
    assert!(
        Mutation::detach_job_agent(&db.conn, w.d1, w.a1)
            .await
            .unwrap()
    );
    assert!(
        !Mutation::detach_job_agent(&db.conn, w.d1, w.a1)
            .await
            .unwrap()
    );
    assert_eq!(all_links(&db).await, vec![(w.d1, w.a2, json!({}))]);
}

async fn replace_sets_exactly_the_given_agents(db: TestDb) {
    let w = world(&db).await;
    Mutation::attach_job_agent(&db.conn, w.d1, assign(w.a1, json!({"old": 1})))
        .await
        .unwrap();
    let set = vec![
        assign(w.a2, json!({"n": 2})),
        assign(w.shared, json!({"n": 4})),
    ];
    Mutation::replace_job_agents(&db.conn, w.d1, set)
        .await
        .unwrap();
    assert_eq!(
        all_links(&db).await,
        vec![
            (w.d1, w.a2, json!({"n": 2})),
            (w.d1, w.shared, json!({"n": 4}))
        ]
    );
    Mutation::replace_job_agents(&db.conn, w.d1, vec![])
        .await
        .unwrap();
    assert!(all_links(&db).await.is_empty());
}

/// Whether an error is the one a case expects.
type IsExpected = fn(&ServiceError) -> bool;

async fn replace_refuses_bad_sets_and_keeps_the_old_one(db: TestDb) {
    let w = world(&db).await;
    Mutation::replace_job_agents(&db.conn, w.d1, vec![assign(w.a1, json!({"kept": true}))])
        .await
        .unwrap();
    let before = all_links(&db).await;
    let missing = Uuid::new_v4();
    let cases: Vec<(Vec<AgentAssignment>, IsExpected)> = vec![
        (
            vec![assign(w.a2, json!({})), assign(w.a2, json!({}))],
            |e| matches!(e, ServiceError::DuplicateAgent(_)),
        ),
        (
            vec![assign(w.a2, json!({})), assign(missing, json!({}))],
            |e| matches!(e, ServiceError::JobAgentNotFound(_)),
        ),
        (
            vec![assign(w.a2, json!({})), assign(w.a3, json!({}))],
            |e| matches!(e, ServiceError::CrossWorkspace { .. }),
        ),
        (vec![assign(w.a2, json!([]))], |e| {
            matches!(e, ServiceError::ConfigNotObject { .. })
        }),
    ];
    for (set, expected) in cases {
        let error = Mutation::replace_job_agents(&db.conn, w.d1, set)
            .await
            .unwrap_err();
        assert!(expected(&error), "{error:?}");
        assert_eq!(all_links(&db).await, before);
    }
    let error = Mutation::replace_job_agents(&db.conn, missing, vec![])
        .await
        .unwrap_err();
    assert!(
        matches!(error, ServiceError::DeploymentNotFound(_)),
        "{error:?}"
    );
}

async fn create_deployment_with_agents_is_all_or_nothing(db: TestDb) {
    let w = world(&db).await;
    let new = |workspace_id| NewDeployment {
        name: "created".into(),
        resource_selector: Some("x".into()),
        workspace_id,
    };
    let created = Mutation::create_deployment(
        &db.conn,
        new(Some(w.w1)),
        vec![assign(w.a2, json!({"b": 2})), assign(w.a1, json!({"a": 1}))],
    )
    .await
    .unwrap();
    let agents: Vec<(Uuid, Json)> = created
        .job_agents
        .iter()
        .map(|l| (l.job_agent.id, l.config.clone()))
        .collect();
    assert_eq!(
        agents,
        vec![(w.a1, json!({"a": 1})), (w.a2, json!({"b": 2}))]
    );
    let stored = deployment::Entity::find_by_id(created.deployment.id)
        .one(&db.conn)
        .await
        .unwrap();
    assert_eq!(stored, Some(created.deployment.clone()));

    let deployments = deployment::Entity::find().count(&db.conn).await.unwrap();
    let links = all_links(&db).await;
    let missing = Uuid::new_v4();
    let failures = [
        Mutation::create_deployment(&db.conn, new(Some(missing)), vec![])
            .await
            .unwrap_err(),
        Mutation::create_deployment(&db.conn, new(Some(w.w1)), vec![assign(w.a3, json!({}))])
            .await
            .unwrap_err(),
        Mutation::create_deployment(
            &db.conn,
            new(None),
            vec![assign(w.a1, json!({})), assign(w.a1, json!({}))],
        )
        .await
        .unwrap_err(),
        Mutation::create_deployment(
            &db.conn,
            new(None),
            vec![assign(w.a1, json!({})), assign(missing, json!({}))],
        )
        .await
        .unwrap_err(),
    ];
    assert!(matches!(failures[0], ServiceError::WorkspaceNotFound(id) if id == missing));
    assert!(matches!(failures[1], ServiceError::CrossWorkspace { .. }));
    assert!(matches!(failures[2], ServiceError::DuplicateAgent(id) if id == w.a1));
    assert!(matches!(failures[3], ServiceError::JobAgentNotFound(id) if id == missing));
    assert_eq!(
        deployment::Entity::find().count(&db.conn).await.unwrap(),
        deployments
    );
    assert_eq!(all_links(&db).await, links);
}

async fn agents_of_a_deployment_and_deployments_of_an_agent(db: TestDb) {
    let w = world(&db).await;
    Mutation::replace_job_agents(
        &db.conn,
        w.d1,
        vec![assign(w.a2, json!({"x": 2})), assign(w.a1, json!({"x": 1}))],
    )
    .await
    .unwrap();
    Mutation::attach_job_agent(&db.conn, w.loose, assign(w.a1, json!({"y": 1})))
        .await
        .unwrap();

    let agents = Query::job_agents_of_deployment(&db.conn, w.d1)
        .await
        .unwrap();
    let agents: Vec<(Uuid, Json)> = agents
        .into_iter()
        .map(|l| (l.job_agent.id, l.config))
        .collect();
    assert_eq!(
        agents,
        vec![(w.a1, json!({"x": 1})), (w.a2, json!({"x": 2}))]
    );

    let mut expected = vec![(w.d1, json!({"x": 1})), (w.loose, json!({"y": 1}))];
    expected.sort_by_key(|e| e.0);
    let deployments = Query::deployments_of_job_agent(&db.conn, w.a1)
        .await
        .unwrap();
    let deployments: Vec<(Uuid, Json)> = deployments
        .into_iter()
        .map(|l| (l.deployment.id, l.config))
        .collect();
    assert_eq!(deployments, expected);

    assert!(
        Query::deployments_of_job_agent(&db.conn, w.a3)
            .await
            .unwrap()
            .is_empty()
    );
    let missing = Uuid::new_v4();
    let error = Query::job_agents_of_deployment(&db.conn, missing)
        .await
        .unwrap_err();
    assert!(matches!(error, ServiceError::DeploymentNotFound(id) if id == missing));
    let error = Query::deployments_of_job_agent(&db.conn, missing)
        .await
        .unwrap_err();
    assert!(matches!(error, ServiceError::JobAgentNotFound(id) if id == missing));
}

async fn workspace_pages_list_each_deployment_once(db: TestDb) {
    let w = world(&db).await;
    let mut ids = vec![w.d1];
    for i in 0..24 {
        let id = new_deployment(&db, w.w1).await;
        let set = match i % 3 {
            0 => vec![],
            1 => vec![assign(w.a1, json!({"i": i}))],
            _ => vec![
                assign(w.a1, json!({"i": i})),
                assign(w.a2, json!({})),
                assign(w.shared, json!({})),
            ],
        };
        Mutation::replace_job_agents(&db.conn, id, set)
            .await
            .unwrap();
        ids.push(id);
    }
    // Another workspace's deployment never shows up.
    deployment(Uuid::new_v4(), Some(w.w2))
        .into_active_model()
        .insert(&db.conn)
        .await
        .unwrap();

    let (conn, statements) = recording_connection(&db).await;
    let mut seen = vec![];
    let mut after = None;
    let mut pages = 0;
    loop {
        let (page, used) = counted(
            &statements,
            Query::workspace_deployments(&conn, w.w1, after, 10),
        )
        .await;
        let page = page.unwrap();
        // The deployments, then all their links with their agents: never one per row.
        assert_eq!(used, 2, "page {pages} took {used} statements");
        pages += 1;
        for item in &page.deployments {
            let expected = Query::job_agents_of_deployment(&db.conn, item.deployment.id)
                .await
                .unwrap();
            assert_eq!(
                item.job_agents, expected,
                "agents of {}",
                item.deployment.id
            );
            seen.push(item.deployment.id);
        }
        match page.next_after {
            Some(last) => after = Some(last),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    ids.sort();
    assert_eq!(seen, ids);
    let error = Query::workspace_deployments(&conn, Uuid::new_v4(), None, 10)
        .await
        .unwrap_err();
    assert!(matches!(error, ServiceError::WorkspaceNotFound(_)));
}

async fn an_agents_deployments_page_in_order_one_statement_each(db: TestDb) {
    let w = world(&db).await;
    let mut expected = vec![];
    for i in 0..7 {
        let id = new_deployment(&db, w.w1).await;
        // Another agent's links sit between this agent's in the index: they never show up.
        let mut set = vec![assign(w.a2, json!({}))];
        if i != 3 {
            set.push(assign(w.a1, json!({"i": i})));
            expected.push((id, json!({"i": i})));
        }
        Mutation::replace_job_agents(&db.conn, id, set)
            .await
            .unwrap();
    }
    expected.sort_by_key(|e| e.0);

    let (conn, statements) = recording_connection(&db).await;
    let (mut seen, mut after, mut pages) = (vec![], None, 0);
    loop {
        let page = Query::deployments_of_job_agent_page(&conn, w.a1, after, 4);
        let (page, used) = counted(&statements, page).await;
        let page = page.unwrap();
        assert_eq!(used, 1, "page {pages} took {used} statements");
        pages += 1;
        seen.extend(
            page.deployments
                .into_iter()
                .map(|l| (l.deployment.id, l.config)),
        );
        match page.next_after {
            Some(last) => after = Some(last),
            None => break,
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(seen, expected);
    let whole: Vec<_> = Query::deployments_of_job_agent(&db.conn, w.a1)
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.deployment.id, l.config))
        .collect();
    assert_eq!(whole, expected);

    // A page after the last deployment is empty, not an error; an unknown agent is one.
    let last = expected.last().unwrap().0;
    let page = Query::deployments_of_job_agent_page(&db.conn, w.a1, Some(last), 4)
        .await
        .unwrap();
    assert_eq!((page.deployments.len(), page.next_after), (0, None));
    let missing = Uuid::new_v4();
    let error = Query::deployments_of_job_agent_page(&db.conn, missing, None, 4)
        .await
        .unwrap_err();
    assert!(matches!(error, ServiceError::JobAgentNotFound(id) if id == missing));
}

async fn deleting_a_deployment_or_an_agent_removes_its_links(db: TestDb) {
    let w = world(&db).await;
    Mutation::replace_job_agents(
        &db.conn,
        w.d1,
        vec![assign(w.a1, json!({})), assign(w.a2, json!({}))],
    )
    .await
    .unwrap();
    Mutation::replace_job_agents(
        &db.conn,
        w.loose,
        vec![assign(w.a1, json!({})), assign(w.a3, json!({}))],
    )
    .await
    .unwrap();
    let agent = job_agent::Entity::find_by_id(w.a1)
        .one(&db.conn)
        .await
        .unwrap()
        .unwrap();
    agent.delete(&db.conn).await.unwrap();
    assert_eq!(all_links(&db).await.len(), 2);
    let d1 = deployment::Entity::find_by_id(w.d1)
        .one(&db.conn)
        .await
        .unwrap()
        .unwrap();
    d1.delete(&db.conn).await.unwrap();
    assert_eq!(all_links(&db).await, vec![(w.loose, w.a3, json!({}))]);
}

async fn concurrent_replaces_leave_exactly_one_callers_set(db: TestDb) {
    let w = world(&db).await;
    let (first, _) = recording_connection(&db).await;
    let (second, _) = recording_connection(&db).await;
    let one = vec![
        assign(w.a1, json!({"by": "one"})),
        assign(w.shared, json!({"by": "one"})),
    ];
    let other = vec![assign(w.a2, json!({"by": "other"}))];
    let as_links = |set: &[AgentAssignment]| {
        let mut links: Vec<_> = set
            .iter()
            .map(|a| (w.d1, a.job_agent_id, a.config.clone()))
            .collect();
        links.sort_by_key(|l| (l.0, l.1));
        links
    };
    for round in 0..20 {
        let (a, b) = futures_util::future::join(
            Mutation::replace_job_agents(&first, w.d1, one.clone()),
            Mutation::replace_job_agents(&second, w.d1, other.clone()),
        )
        .await;
        a.unwrap();
        b.unwrap();
        let links = all_links(&db).await;
        assert!(
            links == as_links(&one) || links == as_links(&other),
            "round {round}: a mix: {links:?}"
        );
    }
}

/// The statements each public call sends (SeaORM's metric callback; `BEGIN` and `COMMIT`
/// are not statements to it), on the happy path and on the error path that costs most. A
/// change that adds a round trip to any call fails here.
async fn each_call_sends_its_statements_and_no_more(db: TestDb) {
    let w = world(&db).await;
    let (conn, statements) = recording_connection(&db).await;
    let mut counts = vec![];
    macro_rules! count {
        ($name:expr, $call:expr) => {{
            let (out, used) = counted(&statements, $call).await;
            counts.push(($name, used));
            out
        }};
    }
    count!(
        "attach_job_agent",
        Mutation::attach_job_agent(&conn, w.d1, assign(w.a1, json!({})))
    )
    .unwrap();
    let set = vec![assign(w.a1, json!({"x": 1})), assign(w.a2, json!({}))];
    count!(
        "replace_job_agents",
        Mutation::replace_job_agents(&conn, w.d1, set)
    )
    .unwrap();
    let new = NewDeployment {
        name: "counted".into(),
        resource_selector: None,
        workspace_id: Some(w.w1),
    };
    let set = vec![assign(w.a1, json!({})), assign(w.shared, json!({}))];
    let created = count!(
        "create_deployment",
        Mutation::create_deployment(&conn, new, set)
    )
    .unwrap();
    count!(
        "detach_job_agent",
        Mutation::detach_job_agent(&conn, created.deployment.id, w.shared)
    )
    .unwrap();
    count!(
        "job_agents_of_deployment",
        Query::job_agents_of_deployment(&conn, w.d1)
    )
    .unwrap();
    count!(
        "job_agents_of_deployment (no links)",
        Query::job_agents_of_deployment(&conn, w.loose)
    )
    .unwrap();
    count!(
        "deployments_of_job_agent",
        Query::deployments_of_job_agent(&conn, w.a1)
    )
    .unwrap();
    count!(
        "deployments_of_job_agent_page",
        Query::deployments_of_job_agent_page(&conn, w.a1, None, 10)
    )
    .unwrap();
    count!(
        "workspace_deployments",
        Query::workspace_deployments(&conn, w.w1, None, 10)
    )
    .unwrap();
    count!(
        "workspace_deployments (empty)",
        Query::workspace_deployments(&conn, w.w2, None, 10)
    )
    .unwrap();
    eprintln!("{:?} statements per call: {counts:?}", db.backend);
    let expected = vec![
        ("attach_job_agent", 3),
        ("replace_job_agents", 4),
        ("create_deployment", 4),
        ("detach_job_agent", 1),
        ("job_agents_of_deployment", 1),
        ("job_agents_of_deployment (no links)", 2),
        ("deployments_of_job_agent", 1),
        ("deployments_of_job_agent_page", 1),
        ("workspace_deployments", 2),
        ("workspace_deployments (empty)", 2),
    ];
    assert_eq!(counts, expected);
}
