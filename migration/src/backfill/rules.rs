//! The backfill rules: what one legacy `deployment` row becomes.
//!
//! This module is the specification in code. It is pure (no database), so every rule is
//! tested here on its own, and the same function serves the backfill and anything that
//! previews it. The order of the checks is the order of the reject table in the README:
//! the first check that fails decides the reason.
//!
//! JSON is handled as raw text ([`RawValue`]) so that a link's `config` is the source's
//! bytes, never a re-serialisation: numbers beyond `f64`, unicode escapes and key order
//! survive exactly.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

use serde_json::value::RawValue;
use uuid::Uuid;

use crate::ids::IdKey;

/// The legacy column a reject row is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LegacyColumn {
    /// `deployment.job_agents`.
    JobAgents,
    /// `deployment.job_agent_id` (with its `job_agent_config`).
    JobAgentId,
    /// `deployment.job_agent_config` on its own.
    JobAgentConfig,
}

impl LegacyColumn {
    /// The value stored in `deployment_job_agent_backfill_reject.legacy_column`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JobAgents => "job_agents",
            Self::JobAgentId => "job_agent_id",
            Self::JobAgentConfig => "job_agent_config",
        }
    }
}

/// Why a legacy value was not carried over whole, in the order the checks apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// The stored text is not JSON.
    InvalidJson,
    /// `job_agents` is JSON but neither an array nor null.
    NotAnArray,
    /// An element is neither a string nor an object with a string `ref`.
    MalformedEntry,
    /// The reference is not a UUID.
    InvalidRef,
    /// No job agent has that id.
    UnknownJobAgent,
    /// Deployment and agent both have a workspace, and they differ.
    CrossWorkspace,
    /// `config` is present, not null, and not an object.
    InvalidConfig,
    /// An earlier entry already linked that agent.
    Duplicate,
    /// `job_agent_id` is set, so the old application never read `job_agents`.
    ShadowedByJobAgentId,
    /// `job_agent_config` holds something but `job_agent_id` is NULL.
    OrphanConfig,
    /// Linked, but other keys with values were left behind.
    ExtraKeysDropped,
}

impl RejectReason {
    /// Every reason, in check order.
    pub const ALL: [RejectReason; 11] = [
        Self::InvalidJson,
        Self::NotAnArray,
        Self::MalformedEntry,
        Self::InvalidRef,
        Self::UnknownJobAgent,
        Self::CrossWorkspace,
        Self::InvalidConfig,
        Self::Duplicate,
        Self::ShadowedByJobAgentId,
        Self::OrphanConfig,
        Self::ExtraKeysDropped,
    ];

    /// The value stored in `deployment_job_agent_backfill_reject.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::NotAnArray => "not_an_array",
            Self::MalformedEntry => "malformed_entry",
            Self::InvalidRef => "invalid_ref",
            Self::UnknownJobAgent => "unknown_job_agent",
            Self::CrossWorkspace => "cross_workspace",
            Self::InvalidConfig => "invalid_config",
            Self::Duplicate => "duplicate",
            Self::ShadowedByJobAgentId => "shadowed_by_job_agent_id",
            Self::OrphanConfig => "orphan_config",
            Self::ExtraKeysDropped => "extra_keys_dropped",
        }
    }
}

impl serde::Serialize for RejectReason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A legacy deployment as the rules see it: ids already decoded, JSON as stored text.
#[derive(Debug, Clone, Default)]
pub struct LegacyDeployment<'a> {
    /// The deployment's workspace, when it has one.
    pub workspace_id: Option<IdKey>,
    /// `job_agent_id` as stored (SQL NULL is `None`).
    pub job_agent_id: Option<IdKey>,
    /// `job_agent_config` as stored text (SQL NULL is `None`).
    pub job_agent_config: Option<&'a str>,
    /// `job_agents` as stored text (SQL NULL is `None`).
    pub job_agents: Option<&'a str>,
}

/// What the rules need to know about a job agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentFacts {
    /// The agent's workspace, when it has one.
    pub workspace_id: Option<IdKey>,
}

/// A link to write: the agent (by UUID) and the exact JSON text of its config, borrowed from
/// the source where it can be (a plan holds no second copy of a deployment's legacy text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedLink<'a> {
    /// The linked agent.
    pub job_agent: Uuid,
    /// The config, as the exact JSON text of the source.
    pub config: Cow<'a, str>,
}

/// A reject row to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedReject<'a> {
    /// The legacy column the value came from.
    pub column: LegacyColumn,
    /// The 0-based array position, when the reject is about one element.
    pub entry_index: Option<i64>,
    /// Valid JSON text: the entry as stored, or a JSON string holding text that was not JSON.
    pub entry: Cow<'a, str>,
    /// Why it was not carried over whole.
    pub reason: RejectReason,
}

impl PlannedReject<'_> {
    /// Whether the deployment's agents end up other than the old application used them.
    /// Values it never read (`job_agents` shadowed by `job_agent_id`, a config without an
    /// agent) change nothing; every other reject drops or alters something it used.
    pub fn changes_meaning(&self) -> bool {
        self.reason != RejectReason::ShadowedByJobAgentId
            && self.column != LegacyColumn::JobAgentConfig
    }
}

/// Everything one deployment turns into.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan<'a> {
    /// Links to write, in entry order.
    pub links: Vec<PlannedLink<'a>>,
    /// Reject rows to record.
    pub rejects: Vec<PlannedReject<'a>>,
}

/// Applies the backfill rules to one deployment. `agents` answers "which agent has this id".
pub fn plan_deployment<'a, 'f>(
    deployment: &LegacyDeployment<'a>,
    agents: impl Fn(&Uuid) -> Option<&'f AgentFacts>,
) -> Plan<'a> {
    let mut plan = Plan::default();
    match &deployment.job_agent_id {
        Some(job_agent_id) => {
            plan_single_agent(deployment, job_agent_id, &agents, &mut plan);
            shadow_job_agents(deployment.job_agents, &mut plan);
        }
        None => {
            plan_job_agents(deployment, &agents, &mut plan);
            check_orphan_config(deployment.job_agent_config, &mut plan);
        }
    }
    for reject in &mut plan.rejects {
        reject.entry = storable(std::mem::take(&mut reject.entry));
    }
    plan
}

/// `job_agent_id` set: one link `(job_agent_id, job_agent_config)`, with the same agent and
/// config checks as an array entry.
fn plan_single_agent<'a, 'f>(
    deployment: &LegacyDeployment<'a>,
    job_agent_id: &IdKey,
    agents: &impl Fn(&Uuid) -> Option<&'f AgentFacts>,
    plan: &mut Plan<'a>,
) {
    let config_text = deployment.job_agent_config;
    let config = config_text.map(parse_json);
    let reject = |reason| PlannedReject {
        column: LegacyColumn::JobAgentId,
        entry_index: None,
        entry: single_agent_entry(job_agent_id, config_text),
        reason,
    };
    if let Some(Err(())) = config {
        plan.rejects.push(reject(RejectReason::InvalidJson));
        return;
    }
    let config = config.and_then(Result::ok);
    match check_agent_and_config(job_agent_id.uuid(), config, deployment, agents) {
        Ok((job_agent, config)) => plan.links.push(PlannedLink { job_agent, config }),
        Err(reason) => plan.rejects.push(reject(reason)),
    }
}

/// `job_agent_id` set: the old application never read `job_agents`, so whatever it holds is
/// recorded, not linked.
fn shadow_job_agents<'a>(job_agents: Option<&'a str>, plan: &mut Plan<'a>) {
    let shadowed = |entry_index, entry: &'a str| PlannedReject {
        column: LegacyColumn::JobAgents,
        entry_index,
        entry: Cow::Borrowed(entry),
        reason: RejectReason::ShadowedByJobAgentId,
    };
    match read_job_agents(job_agents, plan) {
        JobAgentsValue::Empty => {}
        JobAgentsValue::Array(entries) => {
            for (index, entry) in entries.iter().enumerate() {
                plan.rejects.push(shadowed(Some(index as i64), entry.get()));
            }
        }
        JobAgentsValue::Other(value) => plan.rejects.push(shadowed(None, value.get())),
    }
}

/// `job_agent_id` NULL: each entry of `job_agents`, in order, is linked or recorded.
fn plan_job_agents<'a, 'f>(
    deployment: &LegacyDeployment<'a>,
    agents: &impl Fn(&Uuid) -> Option<&'f AgentFacts>,
    plan: &mut Plan<'a>,
) {
    let entries = match read_job_agents(deployment.job_agents, plan) {
        JobAgentsValue::Empty => return,
        JobAgentsValue::Array(entries) => entries,
        JobAgentsValue::Other(value) => {
            plan.rejects.push(PlannedReject {
                column: LegacyColumn::JobAgents,
                entry_index: None,
                entry: Cow::Borrowed(value.get()),
                reason: RejectReason::NotAnArray,
            });
            return;
        }
    };
    let mut linked = HashSet::new();
    for (index, raw) in entries.iter().enumerate() {
        let reject = |reason| PlannedReject {
            column: LegacyColumn::JobAgents,
            entry_index: Some(index as i64),
            entry: Cow::Borrowed(raw.get()),
            reason,
        };
        let entry = match Entry::parse(raw) {
            Ok(entry) => entry,
            Err(reason) => {
                plan.rejects.push(reject(reason));
                continue;
            }
        };
        let checked = check_agent_and_config(entry.agent_ref(), entry.config, deployment, agents)
            .and_then(|(agent, config)| match linked.insert(agent) {
                true => Ok((agent, config)),
                false => Err(RejectReason::Duplicate),
            });
        match checked {
            Ok((job_agent, config)) => {
                plan.links.push(PlannedLink { job_agent, config });
                if entry.has_extra_values {
                    plan.rejects.push(reject(RejectReason::ExtraKeysDropped));
                }
            }
            Err(reason) => plan.rejects.push(reject(reason)),
        }
    }
}

/// `job_agent_id` NULL: a config other than `{}` or null belonged to no agent.
fn check_orphan_config<'a>(job_agent_config: Option<&'a str>, plan: &mut Plan<'a>) {
    let Some(text) = job_agent_config else { return };
    let reason = match parse_json(text) {
        Err(()) => RejectReason::InvalidJson,
        Ok(value) if is_null(value) || is_empty_object(value) => return,
        Ok(_) => RejectReason::OrphanConfig,
    };
    plan.rejects.push(PlannedReject {
        column: LegacyColumn::JobAgentConfig,
        entry_index: None,
        entry: json_or_string(text),
        reason,
    });
}

/// The checks shared by `job_agent_id` and array entries, in table order:
/// `invalid_ref`, `unknown_job_agent`, `cross_workspace`, `invalid_config`.
/// On success, returns the agent and the config text to store.
fn check_agent_and_config<'a, 'f>(
    agent_ref: Option<Uuid>,
    config: Option<&'a RawValue>,
    deployment: &LegacyDeployment<'_>,
    agents: &impl Fn(&Uuid) -> Option<&'f AgentFacts>,
) -> Result<(Uuid, Cow<'a, str>), RejectReason> {
    let agent_id = agent_ref.ok_or(RejectReason::InvalidRef)?;
    let agent = agents(&agent_id).ok_or(RejectReason::UnknownJobAgent)?;
    if let (Some(ours), Some(theirs)) = (&deployment.workspace_id, &agent.workspace_id)
        && ours != theirs
    {
        return Err(RejectReason::CrossWorkspace);
    }
    let config = match config {
        None => Cow::Borrowed("{}"),
        Some(value) if is_null(value) => Cow::Borrowed("{}"),
        Some(value) if is_object(value) && !holds_nul(value.get()) => Cow::Borrowed(value.get()),
        Some(_) => return Err(RejectReason::InvalidConfig),
    };
    Ok((agent_id, config))
}

/// `job_agents` after the whole-value checks.
enum JobAgentsValue<'a> {
    /// SQL NULL, JSON null, `[]`, or text that was not JSON (already recorded).
    Empty,
    Array(Vec<&'a RawValue>),
    Other(&'a RawValue),
}

/// Parses the stored `job_agents` text; records `invalid_json` itself.
fn read_job_agents<'a>(text: Option<&'a str>, plan: &mut Plan<'a>) -> JobAgentsValue<'a> {
    let Some(text) = text else {
        return JobAgentsValue::Empty;
    };
    let Ok(value) = parse_json(text) else {
        plan.rejects.push(PlannedReject {
            column: LegacyColumn::JobAgents,
            entry_index: None,
            entry: json_or_string(text),
            reason: RejectReason::InvalidJson,
        });
        return JobAgentsValue::Empty;
    };
    if is_null(value) {
        return JobAgentsValue::Empty;
    }
    match serde_json::from_str::<Vec<&RawValue>>(value.get()) {
        Ok(entries) => JobAgentsValue::Array(entries),
        Err(_) => JobAgentsValue::Other(value),
    }
}

/// One element of `job_agents`: an object with a string `ref`, or a bare string.
struct Entry<'a> {
    agent_ref: String,
    config: Option<&'a RawValue>,
    /// Keys other than `ref` and `config` whose values are not empty.
    has_extra_values: bool,
}

impl<'a> Entry<'a> {
    fn parse(raw: &'a RawValue) -> Result<Self, RejectReason> {
        if let Ok(agent_ref) = serde_json::from_str::<String>(raw.get()) {
            return Ok(Self {
                agent_ref,
                config: None,
                has_extra_values: false,
            });
        }
        let mut object: BTreeMap<String, &'a RawValue> =
            serde_json::from_str(raw.get()).map_err(|_| RejectReason::MalformedEntry)?;
        let agent_ref = object
            .remove("ref")
            .and_then(|value| serde_json::from_str::<String>(value.get()).ok())
            .ok_or(RejectReason::MalformedEntry)?;
        let config = object.remove("config");
        let has_extra_values = object.values().any(|value| !is_empty_value(value));
        Ok(Self {
            agent_ref,
            config,
            has_extra_values,
        })
    }

    /// The referenced agent, if `ref` is a UUID in any form the `uuid` crate reads
    /// (hyphenated, simple, braced, URN; any case).
    fn agent_ref(&self) -> Option<Uuid> {
        Uuid::parse_str(&self.agent_ref).ok()
    }
}

/// The reject entry for the `job_agent_id` pair: `{"ref": <id>, "config": <config>}`.
fn single_agent_entry(job_agent_id: &IdKey, config: Option<&str>) -> Cow<'static, str> {
    let config = config.map_or(Cow::Borrowed("null"), json_or_string);
    let reference = serde_json::to_string(&job_agent_id.to_string()).expect("a string serialises");
    Cow::Owned(format!("{{\"ref\":{reference},\"config\":{config}}}"))
}

/// Valid JSON text for `text`: itself when it is JSON, otherwise a JSON string holding it.
fn json_or_string(text: &str) -> Cow<'_, str> {
    match parse_json(text) {
        Ok(value) => Cow::Borrowed(value.get()),
        Err(()) => Cow::Owned(serde_json::to_string(text).expect("a string serialises")),
    }
}

/// Whether JSON text holds a NUL character (only writable as `\u0000`). PostgreSQL's
/// `jsonb` cannot store one, so no backend stores such a value as JSON: a config holding
/// one is `invalid_config`, and a reject entry holding one is recorded as its text.
fn holds_nul(json: &str) -> bool {
    fn any_nul(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::String(s) => s.contains('\0'),
            serde_json::Value::Array(items) => items.iter().any(any_nul),
            serde_json::Value::Object(object) => {
                (object.iter()).any(|(key, value)| key.contains('\0') || any_nul(value))
            }
            _ => false,
        }
    }
    json.contains("\\u0000")
        && serde_json::from_str::<serde_json::Value>(json).is_ok_and(|v| any_nul(&v))
}

/// A reject entry every backend can store: the JSON itself, or a JSON string holding its
/// text when it holds a NUL character.
fn storable(entry: Cow<'_, str>) -> Cow<'_, str> {
    match holds_nul(&entry) {
        true => Cow::Owned(serde_json::to_string(&entry).expect("a string serialises")),
        false => entry,
    }
}

fn parse_json(text: &str) -> Result<&RawValue, ()> {
    serde_json::from_str::<&RawValue>(text.trim()).map_err(|_| ())
}

fn is_null(value: &RawValue) -> bool {
    value.get() == "null"
}

fn is_object(value: &RawValue) -> bool {
    value.get().starts_with('{')
}

fn is_empty_object(value: &RawValue) -> bool {
    serde_json::from_str::<BTreeMap<String, &RawValue>>(value.get()).is_ok_and(|m| m.is_empty())
}

/// Null, `""`, `[]` and `{}` carry nothing; anything else would be lost if dropped.
fn is_empty_value(value: &RawValue) -> bool {
    match serde_json::from_str::<serde_json::Value>(value.get()) {
        Ok(serde_json::Value::Null) => true,
        Ok(serde_json::Value::String(s)) => s.is_empty(),
        Ok(serde_json::Value::Array(a)) => a.is_empty(),
        Ok(serde_json::Value::Object(o)) => o.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
