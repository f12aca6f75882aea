//! SQLite's expand phase: the rules as trigger SQL (`sync.sql`, with the rules' body in
//! `sync_rules.sql`), filled in with our names and the expressions that read ids and
//! references as the rules compare them. SQLite has no functions of its own, so those
//! expressions are written out here, once each, and pasted where they are used.

use crate::backends::template::{SYNC_NAMES, fill};
use crate::tables::{
    DEPLOYMENT, JOIN_TABLE, RULE_HELPER_PREFIX, SYNC_FROM_LEGACY_INSERT_TRIGGER,
    SYNC_FROM_LEGACY_UPDATE_TRIGGER, SYNC_GUARD, SYNC_TO_LEGACY_TRIGGERS,
};

const SCRIPT: &str = include_str!("sync.sql");
const RULES: &str = include_str!("sync_rules.sql");

/// Rust's `char::is_whitespace`, which the rules trim with, as `trim`'s character set.
const UNICODE_SPACE: &str = "char(9, 10, 11, 12, 13, 32, 133, 160, 5760, 8192, 8193, 8194, 8195, 8196, 8197, 8198, \
     8199, 8200, 8201, 8202, 8232, 8233, 8239, 8287, 12288)";

/// The guard table (see `sync.sql`).
pub fn guard() -> &'static str {
    SYNC_GUARD
}

/// The scratch table the rules' body works in.
fn scratch() -> String {
    format!("{RULE_HELPER_PREFIX}entry")
}

/// `text` as 32 lower-case hex digits when it is a UUID in any spelling
/// `uuid::Uuid::parse_str` reads (hyphenated, simple, braced, URN; any case), else NULL.
fn uuid_key(text: &str) -> String {
    let hex = "[0-9A-Fa-f]";
    let group = |n: usize| hex.repeat(n);
    let hyphenated = [8, 4, 4, 4, 12].map(group).join("-");
    let simple = group(32);
    format!(
        "(CASE \
           WHEN length({text}) = 32 AND {text} GLOB '{simple}' THEN lower({text}) \
           WHEN length({text}) = 36 AND {text} GLOB '{hyphenated}' \
             THEN lower(replace({text}, '-', '')) \
           WHEN length({text}) = 38 AND {text} GLOB '{{{hyphenated}}}' \
             THEN lower(replace(substr({text}, 2, 36), '-', '')) \
           WHEN length({text}) = 45 AND lower(substr({text}, 1, 9)) = 'urn:uuid:' \
             AND substr({text}, 10) GLOB '{hyphenated}' \
             THEN lower(replace(substr({text}, 10), '-', '')) END)"
    )
}

/// What a stored id means (`IdKey`): a 16-byte blob its bytes, text its UUID once trimmed,
/// anything else its text (marked so it never equals a UUID's key).
fn id_key(id: &str) -> String {
    let text = format!("trim(CAST({id} AS TEXT), {UNICODE_SPACE})");
    format!(
        "(CASE WHEN {id} IS NULL THEN NULL \
           WHEN typeof({id}) = 'blob' AND length({id}) = 16 THEN lower(hex({id})) \
           ELSE COALESCE({}, '~' || CAST({id} AS TEXT)) END)",
        uuid_key(&text)
    )
}

/// A 32-digit key spelled as a hyphenated UUID.
fn hyphenated(key: &str) -> String {
    format!(
        "(substr({key}, 1, 8) || '-' || substr({key}, 9, 4) || '-' || substr({key}, 13, 4) \
         || '-' || substr({key}, 17, 4) || '-' || substr({key}, 21, 12))"
    )
}

/// A stored id as the rules print it: its UUID hyphenated, else its text.
fn id_display(id: &str) -> String {
    let key = id_key(id);
    format!(
        "(CASE WHEN {key} LIKE '~%' THEN CAST({id} AS TEXT) ELSE {} END)",
        hyphenated(&key)
    )
}

/// Whether JSON text holds a NUL character (`\u0000` not part of an escaped backslash).
fn holds_nul(json: &str) -> String {
    format!("(instr(replace({json}, '\\\\', ''), '\\u0000') > 0)")
}

/// The statement that writes deployment `id`'s legacy columns from its links, in agent id
/// order. (An ordered subquery feeds the aggregate: `json_group_array(… ORDER BY …)` needs
/// SQLite 3.44, and the old application's SQLite must be able to read the schema. SQLite
/// never flattens a subquery with `ORDER BY` into an aggregate, so its rows arrive in
/// order.)
fn write_legacy_of(id: &str) -> String {
    format!(
        "UPDATE {DEPLOYMENT} SET \
           job_agents = (SELECT json_group_array(json(entry)) FROM ( \
                           SELECT json_object('ref', {}, 'config', json(l.config)) AS entry \
                           FROM {JOIN_TABLE} l WHERE l.deployment_id = {id} \
                           ORDER BY l.job_agent_id)), \
           job_agent_id = NULL, \
           job_agent_config = '{{}}' \
         WHERE id = {id};",
        id_display("l.job_agent_id")
    )
}

/// A JSON value's text from its `json_type` and its SQL value (what `json_each` and
/// `json_extract` give), as SQLite 3.37 can spell it (the `->` operator that returns it
/// whole needs 3.38): objects and arrays as they are, strings quoted, integers as written,
/// reals to the 17 digits that read back to the same number, and `true`, `false`, `null`.
fn json_text(json_type: &str, value: &str) -> String {
    format!(
        "(CASE {json_type} WHEN 'object' THEN {value} WHEN 'array' THEN {value} \
           WHEN 'text' THEN json_quote({value}) \
           WHEN 'integer' THEN CAST({value} AS TEXT) \
           WHEN 'real' THEN printf('%!.17g', {value}) \
           ELSE {json_type} END)"
    )
}

/// The script's statements, in order.
pub fn install() -> Vec<String> {
    let scratch = scratch();
    let agents = format!("trim(NEW.job_agents, {UNICODE_SPACE})");
    let config = format!("trim(NEW.job_agent_config, {UNICODE_SPACE})");
    let single_text = format!("trim(CAST(NEW.job_agent_id AS TEXT), {UNICODE_SPACE})");
    let single_agent_key = format!(
        "(CASE WHEN typeof(NEW.job_agent_id) = 'blob' AND length(NEW.job_agent_id) = 16 \
           THEN lower(hex(NEW.job_agent_id)) ELSE {} END)",
        uuid_key(&single_text)
    );
    let rule_values = [
        ("scratch", scratch.clone()),
        ("entry_text", json_text("e.type", "e.value")),
        (
            "entry_config_text",
            json_text(
                "json_type(e.value, '$.config')",
                "json_extract(e.value, '$.config')",
            ),
        ),
        ("agents", agents),
        ("config", config),
        ("single_agent_key", single_agent_key),
        ("single_agent_display", id_display("NEW.job_agent_id")),
        ("reference_key", uuid_key("reference")),
        ("hyphenated_key", hyphenated("agent_key")),
        ("agent_id_key", id_key("a.id")),
        ("agent_workspace_key", id_key("a.workspace_id")),
        ("deployment_workspace_key", id_key("NEW.workspace_id")),
        ("config_holds_nul", holds_nul("config")),
        ("entry_holds_nul", holds_nul("entry")),
    ];
    let rules = fill(RULES, &with_names(&rule_values));
    let values = [
        ("guard", guard().to_owned()),
        ("scratch", scratch),
        ("apply_rules", rules),
        ("write_legacy_of_new", write_legacy_of("NEW.deployment_id")),
        ("write_legacy_of_old", write_legacy_of("OLD.deployment_id")),
    ];
    fill(SCRIPT, &with_names(&values))
        .split("\n$$\n")
        .map(str::trim)
        .filter(|statement| !statement.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `values` after the names every sync script knows.
fn with_names<'a>(values: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    let values = values.iter().map(|(k, v)| (*k, v.as_str()));
    SYNC_NAMES.iter().copied().chain(values).collect()
}

/// Statements that remove what [`install`] created.
pub fn remove() -> Vec<String> {
    let mut statements: Vec<String> = [
        SYNC_FROM_LEGACY_INSERT_TRIGGER,
        SYNC_FROM_LEGACY_UPDATE_TRIGGER,
    ]
    .into_iter()
    .chain(SYNC_TO_LEGACY_TRIGGERS)
    .map(|trigger| format!("DROP TRIGGER IF EXISTS {trigger}"))
    .collect();
    statements.push(format!("DROP TABLE IF EXISTS {}", scratch()));
    statements.push(format!("DROP TABLE IF EXISTS {}", guard()));
    statements
}
