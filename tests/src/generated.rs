//! Generated legacy databases (proptest): workspaces, agents, and deployments whose legacy
//! columns hold whatever an old application may have written (any UUID spelling, missing
//! agents, configs of every JSON type, numbers no `f64` holds, text that is not JSON where
//! the columns are text). Shared by the property suite and the expand phase's differential
//! test.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use uuid::Uuid;

use crate::Backend;
use crate::legacy::Legacy;

/// The largest generated database.
pub const MAX_DEPLOYMENTS_PER_CASE: usize = 1_000;
pub const WORKSPACES: u128 = 3;
/// Agents: (workspace index or none).
pub const AGENTS: [Option<u128>; 6] = [Some(0), Some(0), Some(1), None, Some(2), None];
pub const MISSING_AGENT: Uuid = Uuid::from_u128(0xdead_beef);

pub fn workspace_id(n: u128) -> Uuid {
    Uuid::from_u128(0x1000 + n)
}

pub fn agent_id(n: usize) -> Uuid {
    Uuid::from_u128(0xa000 + n as u128)
}

/// One generated legacy deployment; JSON columns as stored text.
#[derive(Clone, Debug)]
pub struct LegacyRow {
    pub workspace: Option<u128>,
    pub job_agent: Option<usize>,
    pub job_agent_config: String,
    pub job_agents: String,
}

/// A generated legacy database. Its `Debug` is the SQL that builds it.
#[derive(Clone)]
pub struct World {
    pub deployments: Vec<LegacyRow>,
}

pub fn deployment_id(index: usize) -> Uuid {
    Uuid::from_u128(0xd000_0000 + index as u128)
}

impl fmt::Debug for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quote = |text: &str| format!("'{}'", text.replace('\'', "''"));
        let id = |id: Option<Uuid>| id.map_or("NULL".to_owned(), |id| quote(&id.to_string()));
        writeln!(f, "-- the legacy tables, then:")?;
        for n in 0..WORKSPACES {
            writeln!(
                f,
                "INSERT INTO workspace (id, name) VALUES ({}, 'w');",
                id(Some(workspace_id(n)))
            )?;
        }
        for (n, ws) in AGENTS.iter().enumerate() {
            let ws = id(ws.map(workspace_id));
            writeln!(
                f,
                "INSERT INTO job_agent (id, workspace_id, name) VALUES ({}, {ws}, 'a');",
                id(Some(agent_id(n)))
            )?;
        }
        for (n, row) in self.deployments.iter().enumerate() {
            writeln!(
                f,
                "INSERT INTO deployment (id, name, job_agent_id, job_agent_config, workspace_id, job_agents) \
                 VALUES ({}, 'd', {}, {}, {}, {});",
                id(Some(deployment_id(n))),
                id(row.job_agent.map(agent_id)),
                quote(&row.job_agent_config),
                id(row.workspace.map(workspace_id)),
                quote(&row.job_agents),
            )?;
        }
        Ok(())
    }
}

/// Digits no `f64` holds, unicode, escapes, nesting.
fn json_scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("123456789012345678901234567890.25".to_owned()),
        Just("-1e-7".to_owned()),
        Just("\"h\\u00e9llo ☃ 👩‍🚀\"".to_owned()),
        Just("\"'; DROP TABLE deployment; --\"".to_owned()),
        Just("true".to_owned()),
        Just("null".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[a-z]{0,6}".prop_map(|s| format!("\"{s}\"")),
    ]
}

fn json_object() -> impl Strategy<Value = String> {
    prop::collection::vec(("[a-z]{1,4}", json_scalar()), 0..4).prop_map(|fields| {
        let fields: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("\"{k}\": {v}"))
            .collect();
        format!("{{{}}}", fields.join(", "))
    })
}

/// Any config: absent, null, an object, or something that is not an object.
fn config() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        3 => json_object().prop_map(Some),
        1 => Just(None),
        1 => Just(Some("null".to_owned())),
        1 => json_scalar().prop_map(Some),
        1 => Just(Some("[1, {\"a\": 2}]".to_owned())),
    ]
}

/// A reference: to an agent (in any case, any UUID spelling), to no agent, or not a UUID.
fn reference() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0..AGENTS.len()).prop_map(|n| agent_id(n).to_string()),
        1 => (0..AGENTS.len()).prop_map(|n| agent_id(n).to_string().to_uppercase()),
        1 => (0..AGENTS.len()).prop_map(|n| agent_id(n).simple().to_string()),
        1 => (0..AGENTS.len()).prop_map(|n| format!("{{{}}}", agent_id(n))),
        1 => (0..AGENTS.len()).prop_map(|n| format!("URN:uuid:{}", agent_id(n))),
        1 => (0..AGENTS.len()).prop_map(|n| format!(" {}", agent_id(n))),
        1 => Just(MISSING_AGENT.to_string()),
        1 => Just("not-a-uuid".to_owned()),
    ]
}

fn entry() -> impl Strategy<Value = String> {
    let object =
        (reference(), config(), prop::option::of(json_scalar())).prop_map(|(r, config, extra)| {
            let mut fields = vec![format!("\"ref\": \"{r}\"")];
            fields.extend(config.map(|c| format!("\"config\": {c}")));
            fields.extend(extra.map(|e| format!("\"selector\": {e}")));
            format!("{{{}}}", fields.join(", "))
        });
    prop_oneof![
        6 => object,
        2 => reference().prop_map(|r| format!("\"{r}\"")),
        1 => json_scalar(),
        1 => Just("[1, [2]]".to_owned()),
        1 => Just("{\"config\": {}}".to_owned()),
        1 => Just("{\"ref\": 5}".to_owned()),
        // Empty extras are no loss; a non-empty array is an extra.
        1 => reference().prop_map(|r| format!("{{\"ref\": \"{r}\", \"note\": \"\", \"x\": {{}}}}")),
        1 => reference().prop_map(|r| format!("{{\"ref\": \"{r}\", \"tags\": [1]}}")),
    ]
}

fn job_agents(text_columns: bool) -> impl Strategy<Value = String> {
    let array = prop::collection::vec(entry(), 0..7).prop_map(|e| format!("[{}]", e.join(", ")));
    let invalid = if text_columns { 1 } else { 0 };
    prop_oneof![
        8 => array,
        1 => Just("null".to_owned()),
        1 => prop_oneof![json_object(), json_scalar()],
        invalid => Just("[{\"ref\": oops".to_owned()),
        // Text columns: white space around the value (the rules trim Unicode white space).
        invalid => array_padded(),
    ]
}

fn array_padded() -> impl Strategy<Value = String> {
    prop::collection::vec(entry(), 0..3).prop_map(|e| format!("\u{a0} \n[{}]\t", e.join(",")))
}

fn job_agent_config(text_columns: bool) -> impl Strategy<Value = String> {
    let invalid = if text_columns { 1 } else { 0 };
    prop_oneof![
        4 => Just("{}".to_owned()),
        2 => json_object(),
        1 => Just("null".to_owned()),
        1 => json_scalar(),
        invalid => Just("{not json".to_owned()),
        // A NUL character no backend stores as JSON; an escaped backslash that is not one.
        invalid => Just("{\"k\": \"a\\u0000b\"}".to_owned()),
        invalid => Just("{\"k\": \"a\\\\u0000b\"}".to_owned()),
    ]
}

/// Generated legacy databases; `text_columns` where the JSON columns may hold text that is
/// not JSON.
pub fn world(text_columns: bool) -> impl Strategy<Value = World> {
    let row = (
        prop::option::of(0..WORKSPACES),
        prop::option::weighted(0.2, 0..AGENTS.len()),
        job_agent_config(text_columns),
        job_agents(text_columns),
    )
        .prop_map(
            |(workspace, job_agent, job_agent_config, job_agents)| LegacyRow {
                workspace,
                job_agent,
                job_agent_config,
                job_agents,
            },
        );
    prop::collection::vec(row, 1..=MAX_DEPLOYMENTS_PER_CASE)
        .prop_map(|deployments| World { deployments })
}

impl World {
    /// Writes the workspaces and agents every generated database shares.
    pub async fn write_agents(legacy: &Legacy<'_>) {
        for n in 0..WORKSPACES {
            legacy.workspace(workspace_id(n)).await;
        }
        for (n, ws) in AGENTS.iter().enumerate() {
            legacy.agent(agent_id(n), ws.map(workspace_id)).await;
        }
    }

    /// Writes the deployments, in order, with bound values.
    pub async fn write_deployments(&self, legacy: &Legacy<'_>) {
        for (n, row) in self.deployments.iter().enumerate() {
            let (ws, agent) = (row.workspace.map(workspace_id), row.job_agent.map(agent_id));
            legacy
                .deployment(
                    deployment_id(n),
                    ws,
                    agent,
                    &row.job_agent_config,
                    &row.job_agents,
                )
                .await;
        }
    }
}

impl World {
    /// Gives each deployment the legacy values (and workspace) of the next one, the last
    /// those of the first, through updates.
    pub async fn rotate_deployments(&self, legacy: &Legacy<'_>) {
        let count = self.deployments.len();
        for n in 0..count {
            let next = &self.deployments[(n + 1) % count];
            legacy
                .update_deployment(
                    deployment_id(n),
                    next.workspace.map(workspace_id),
                    next.job_agent.map(agent_id),
                    &next.job_agent_config,
                    &next.job_agents,
                )
                .await;
        }
    }
}

static CASE: AtomicUsize = AtomicUsize::new(0);

/// Runs `check` on generated databases (each named `{prefix}_{n}`) until at least
/// `minimum` deployments were checked (`PROPTEST_MIN_DEPLOYMENTS` overrides it); a failing
/// case is shrunk and printed as the SQL that builds it.
pub fn run<F, Fut>(backend: Backend, prefix: &str, minimum: usize, check: F)
where
    F: Fn(Backend, String, World) -> Fut,
    Fut: Future<Output = Result<(), TestCaseError>>,
{
    let minimum = std::env::var("PROPTEST_MIN_DEPLOYMENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(minimum);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Text columns (MariaDB LONGTEXT, SQLite TEXT) can hold text that is not JSON.
    let text_columns = backend != Backend::Postgres;
    let checked = AtomicUsize::new(0);
    let databases = AtomicUsize::new(0);
    while checked.load(Ordering::SeqCst) < minimum {
        let config = Config {
            cases: 10,
            max_shrink_iters: 256,
            failure_persistence: None,
            ..Config::default()
        };
        let result = TestRunner::new(config).run(&world(text_columns), |world| {
            let name = format!("{prefix}_{}", CASE.fetch_add(1, Ordering::SeqCst));
            let size = world.deployments.len();
            runtime.block_on(check(backend, name, world))?;
            checked.fetch_add(size, Ordering::SeqCst);
            databases.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        if let Err(failure) = result {
            panic!("{failure}");
        }
    }
    println!(
        "{backend:?}: {} generated deployments checked in {} databases",
        checked.load(Ordering::SeqCst),
        databases.load(Ordering::SeqCst)
    );
}
