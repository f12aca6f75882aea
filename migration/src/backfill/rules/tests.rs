//! One test per rule: the situation in the name, the outcome in the assertion.

use super::*;

const AGENT: &str = "11111111-1111-4111-8111-111111111111";
const OTHER_AGENT: &str = "22222222-2222-4222-8222-222222222222";
const FOREIGN_AGENT: &str = "33333333-3333-4333-8333-333333333333";
const MISSING_AGENT: &str = "44444444-4444-4444-8444-444444444444";
const HOMELESS_AGENT: &str = "55555555-5555-4555-8555-555555555555";
const WORKSPACE: &str = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa";
const OTHER_WORKSPACE: &str = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb";

fn key(id: &str) -> IdKey {
    IdKey::Uuid(Uuid::parse_str(id).unwrap())
}

/// Agents: two in WORKSPACE, one in OTHER_WORKSPACE, one in no workspace.
fn directory() -> Vec<(Uuid, AgentFacts)> {
    [
        (AGENT, Some(WORKSPACE)),
        (OTHER_AGENT, Some(WORKSPACE)),
        (FOREIGN_AGENT, Some(OTHER_WORKSPACE)),
        (HOMELESS_AGENT, None),
    ]
    .into_iter()
    .map(|(id, ws)| {
        (
            Uuid::parse_str(id).unwrap(),
            AgentFacts {
                workspace_id: ws.map(key),
            },
        )
    })
    .collect()
}

fn plan_with(deployment: LegacyDeployment<'_>) -> Plan<'_> {
    let agents = directory();
    plan_deployment(&deployment, |id| {
        agents.iter().find(|(a, _)| a == id).map(|(_, f)| f)
    })
}

fn in_workspace(job_agents: &str) -> LegacyDeployment<'_> {
    LegacyDeployment {
        workspace_id: Some(key(WORKSPACE)),
        job_agent_id: None,
        job_agent_config: Some("{}"),
        job_agents: Some(job_agents),
    }
}

fn reasons(plan: &Plan) -> Vec<(Option<i64>, RejectReason)> {
    plan.rejects
        .iter()
        .map(|r| (r.entry_index, r.reason))
        .collect()
}

fn link(agent: &str, config: &str) -> PlannedLink<'static> {
    PlannedLink {
        job_agent: Uuid::parse_str(agent).unwrap(),
        config: config.to_owned().into(),
    }
}

#[test]
fn object_entry_with_config_is_linked_with_that_exact_config() {
    let config =
        r#"{"n":123456789012345678901234567890,"s":"h\u00e9 ☃","deep":{"a":[1,{"b":null}]}}"#;
    let source = format!(r#"[{{"ref":"{AGENT}","config":{config}}}]"#);
    let plan = plan_with(in_workspace(&source));
    assert_eq!(plan.links, vec![link(AGENT, config)]);
    assert!(plan.rejects.is_empty());
}

#[test]
fn bare_string_and_uppercase_refs_are_linked_with_empty_config() {
    let source = format!(r#"["{AGENT}", {{"ref":"{}"}}]"#, OTHER_AGENT.to_uppercase());
    let plan = plan_with(in_workspace(&source));
    assert_eq!(plan.links, vec![link(AGENT, "{}"), link(OTHER_AGENT, "{}")]);
    assert!(plan.rejects.is_empty());
}

#[test]
fn null_config_means_empty_object() {
    let source = format!(r#"[{{"ref":"{AGENT}","config":null}}]"#);
    let plan = plan_with(in_workspace(&source));
    assert_eq!(plan.links, vec![link(AGENT, "{}")]);
}

#[test]
fn null_empty_array_and_sql_null_record_nothing() {
    for source in [Some("null"), Some("[]"), Some(" [ ] "), None] {
        let mut deployment = in_workspace("");
        deployment.job_agents = source;
        assert_eq!(plan_with(deployment), Plan::default(), "{source:?}");
    }
}

#[test]
fn text_that_is_not_json_is_invalid_json_kept_as_a_string() {
    let plan = plan_with(in_workspace("[{\"ref\": oops"));
    assert_eq!(reasons(&plan), vec![(None, RejectReason::InvalidJson)]);
    assert_eq!(plan.rejects[0].entry, r#""[{\"ref\": oops""#);
    assert_eq!(plan.rejects[0].column, LegacyColumn::JobAgents);
}

#[test]
fn a_value_that_is_not_an_array_is_recorded_whole() {
    for source in [r#"{"ref":"x"}"#, "\"abc\"", "42", "true"] {
        let plan = plan_with(in_workspace(source));
        assert_eq!(
            reasons(&plan),
            vec![(None, RejectReason::NotAnArray)],
            "{source}"
        );
        assert_eq!(plan.rejects[0].entry, source);
    }
}

#[test]
fn entries_that_are_neither_string_nor_object_with_string_ref_are_malformed() {
    let source = r#"[42, null, [1], {"config":{}}, {"ref":7}, {"ref":null}, true]"#;
    let plan = plan_with(in_workspace(source));
    let expected: Vec<_> = (0..7)
        .map(|i| (Some(i), RejectReason::MalformedEntry))
        .collect();
    assert_eq!(reasons(&plan), expected);
    assert_eq!(plan.rejects[1].entry, "null");
    assert_eq!(plan.rejects[4].entry, r#"{"ref":7}"#);
}

#[test]
fn a_ref_that_is_not_a_uuid_is_invalid_ref() {
    let plan = plan_with(in_workspace(r#"["not-a-uuid", {"ref":""}]"#));
    assert_eq!(
        reasons(&plan),
        vec![
            (Some(0), RejectReason::InvalidRef),
            (Some(1), RejectReason::InvalidRef)
        ]
    );
}

#[test]
fn other_uuid_spellings_are_accepted() {
    let simple = AGENT.replace('-', "");
    let source = format!(r#"["{{{AGENT}}}", "urn:uuid:{OTHER_AGENT}", "{simple}"]"#);
    let plan = plan_with(in_workspace(&source));
    assert_eq!(plan.links, vec![link(AGENT, "{}"), link(OTHER_AGENT, "{}")]);
    assert_eq!(reasons(&plan), vec![(Some(2), RejectReason::Duplicate)]);
}

#[test]
fn a_ref_to_no_agent_is_unknown_job_agent() {
    let source = format!(r#"["{MISSING_AGENT}"]"#);
    let plan = plan_with(in_workspace(&source));
    assert_eq!(
        reasons(&plan),
        vec![(Some(0), RejectReason::UnknownJobAgent)]
    );
}

#[test]
fn an_agent_of_another_workspace_is_cross_workspace() {
    let source = format!(r#"["{FOREIGN_AGENT}"]"#);
    let plan = plan_with(in_workspace(&source));
    assert_eq!(
        reasons(&plan),
        vec![(Some(0), RejectReason::CrossWorkspace)]
    );
}

#[test]
fn a_missing_workspace_on_either_side_is_not_cross_workspace() {
    let source = format!(r#"["{HOMELESS_AGENT}"]"#);
    let plan = plan_with(in_workspace(&source));
    assert_eq!(plan.links, vec![link(HOMELESS_AGENT, "{}")]);
    let mut homeless = in_workspace("");
    homeless.workspace_id = None;
    let source = format!(r#"["{FOREIGN_AGENT}"]"#);
    homeless.job_agents = Some(&source);
    assert_eq!(plan_with(homeless).links, vec![link(FOREIGN_AGENT, "{}")]);
}

#[test]
fn a_config_that_is_not_an_object_is_invalid_config() {
    let source = format!(r#"[{{"ref":"{AGENT}","config":[1]}}, {{"ref":"{AGENT}","config":"x"}}]"#);
    let plan = plan_with(in_workspace(&source));
    assert!(plan.links.is_empty());
    assert_eq!(
        reasons(&plan),
        vec![
            (Some(0), RejectReason::InvalidConfig),
            (Some(1), RejectReason::InvalidConfig)
        ]
    );
}

#[test]
fn the_first_linked_entry_wins_and_later_ones_are_duplicates() {
    let source = format!(
        r#"[{{"ref":"{AGENT}","config":7}}, {{"ref":"{AGENT}","config":{{"a":1}}}}, "{AGENT}"]"#
    );
    let plan = plan_with(in_workspace(&source));
    assert_eq!(plan.links, vec![link(AGENT, r#"{"a":1}"#)]);
    assert_eq!(
        reasons(&plan),
        vec![
            (Some(0), RejectReason::InvalidConfig),
            (Some(2), RejectReason::Duplicate)
        ]
    );
}

#[test]
fn fifty_entries_with_repeats_link_each_agent_once_in_order() {
    let agents = [AGENT, OTHER_AGENT, HOMELESS_AGENT];
    let entries: Vec<String> = (0..50)
        .map(|i| format!(r#"{{"ref":"{}","config":{{"i":{i}}}}}"#, agents[i % 3]))
        .collect();
    let source = format!("[{}]", entries.join(","));
    let plan = plan_with(in_workspace(&source));
    assert_eq!(
        plan.links,
        vec![
            link(AGENT, r#"{"i":0}"#),
            link(OTHER_AGENT, r#"{"i":1}"#),
            link(HOMELESS_AGENT, r#"{"i":2}"#)
        ]
    );
    let expected: Vec<_> = (3..50)
        .map(|i| (Some(i), RejectReason::Duplicate))
        .collect();
    assert_eq!(reasons(&plan), expected);
}

#[test]
fn extra_keys_with_values_are_linked_and_recorded() {
    let source = format!(
        r#"[{{"ref":"{AGENT}","selector":"env = prod"}}, {{"ref":"{OTHER_AGENT}","selector":"","x":null,"y":[],"z":{{}}}}]"#
    );
    let plan = plan_with(in_workspace(&source));
    assert_eq!(plan.links, vec![link(AGENT, "{}"), link(OTHER_AGENT, "{}")]);
    assert_eq!(
        reasons(&plan),
        vec![(Some(0), RejectReason::ExtraKeysDropped)]
    );
}

#[test]
fn job_agent_id_links_its_config_and_shadows_every_entry() {
    let source = format!(r#"["{OTHER_AGENT}", 42]"#);
    let deployment = LegacyDeployment {
        workspace_id: Some(key(WORKSPACE)),
        job_agent_id: Some(key(AGENT)),
        job_agent_config: Some(r#"{"image":"x"}"#),
        job_agents: Some(&source),
    };
    let plan = plan_with(deployment);
    assert_eq!(plan.links, vec![link(AGENT, r#"{"image":"x"}"#)]);
    assert_eq!(
        reasons(&plan),
        vec![
            (Some(0), RejectReason::ShadowedByJobAgentId),
            (Some(1), RejectReason::ShadowedByJobAgentId)
        ]
    );
    assert_eq!(plan.rejects[1].entry, "42");
}

#[test]
fn job_agent_id_shadows_a_non_array_value_whole() {
    let deployment = LegacyDeployment {
        job_agent_id: Some(key(AGENT)),
        job_agent_config: Some("{}"),
        job_agents: Some(r#"{"ref":"x"}"#),
        ..Default::default()
    };
    let plan = plan_with(deployment);
    assert_eq!(
        reasons(&plan),
        vec![(None, RejectReason::ShadowedByJobAgentId)]
    );
}

#[test]
fn job_agent_id_gets_the_same_agent_and_config_checks() {
    let cases = [
        (key(MISSING_AGENT), "{}", RejectReason::UnknownJobAgent),
        (key(FOREIGN_AGENT), "{}", RejectReason::CrossWorkspace),
        (key(AGENT), "[1,2]", RejectReason::InvalidConfig),
        (key(AGENT), "{oops", RejectReason::InvalidJson),
        (
            IdKey::Other("agent-7".into()),
            "{}",
            RejectReason::InvalidRef,
        ),
    ];
    for (id, config, reason) in cases {
        let deployment = LegacyDeployment {
            workspace_id: Some(key(WORKSPACE)),
            job_agent_id: Some(id.clone()),
            job_agent_config: Some(config),
            job_agents: Some("[]"),
        };
        let plan = plan_with(deployment);
        assert!(plan.links.is_empty(), "{reason:?}");
        assert_eq!(reasons(&plan), vec![(None, reason)]);
        assert_eq!(plan.rejects[0].column, LegacyColumn::JobAgentId);
        let entry: serde_json::Value = serde_json::from_str(&plan.rejects[0].entry).unwrap();
        assert_eq!(entry["ref"], serde_json::Value::String(id.to_string()));
    }
}

#[test]
fn job_agent_id_with_null_config_links_an_empty_object() {
    for config in [None, Some("null")] {
        let deployment = LegacyDeployment {
            job_agent_id: Some(key(AGENT)),
            job_agent_config: config,
            ..Default::default()
        };
        assert_eq!(plan_with(deployment).links, vec![link(AGENT, "{}")]);
    }
}

#[test]
fn a_config_without_job_agent_id_is_an_orphan_unless_empty() {
    for (config, expected) in [
        (r#"{"image":"x"}"#, vec![(None, RejectReason::OrphanConfig)]),
        ("[]", vec![(None, RejectReason::OrphanConfig)]),
        ("not json", vec![(None, RejectReason::InvalidJson)]),
        ("{}", vec![]),
        (" { } ", vec![]),
        ("null", vec![]),
    ] {
        let mut deployment = in_workspace("[]");
        deployment.job_agent_config = Some(config);
        let plan = plan_with(deployment);
        assert_eq!(reasons(&plan), expected, "{config}");
        if let Some(reject) = plan.rejects.first() {
            assert_eq!(reject.column, LegacyColumn::JobAgentConfig);
        }
    }
}

#[test]
fn every_reject_entry_is_valid_json() {
    let source = format!(r#"[42, "nope", "{MISSING_AGENT}", {{"ref":"{AGENT}","config":"x"}}]"#);
    let mut deployment = in_workspace(&source);
    deployment.job_agent_config = Some("not json");
    let plan = plan_with(deployment);
    assert_eq!(plan.rejects.len(), 5);
    for reject in &plan.rejects {
        assert!(
            serde_json::from_str::<serde_json::Value>(&reject.entry).is_ok(),
            "{reject:?}"
        );
    }
}

/// What the database would hold for a reject entry: its JSON parsed back.
fn stored(entry: &str) -> serde_json::Value {
    serde_json::from_str(entry).expect("reject entries are JSON")
}

/// Whether a parsed value holds a NUL character anywhere (a key or a string).
fn has_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(has_nul),
        serde_json::Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

#[test]
fn a_config_holding_a_nul_character_is_invalid_config_recorded_as_text() {
    let element = format!(r#"{{"ref":"{AGENT}","config":{{"k":"a\u0000b"}}}}"#);
    let source = format!("[{element}]");
    let plan = plan_with(in_workspace(&source));
    assert!(plan.links.is_empty());
    assert_eq!(reasons(&plan), vec![(Some(0), RejectReason::InvalidConfig)]);
    let entry = stored(&plan.rejects[0].entry);
    assert_eq!(entry, serde_json::Value::String(element));
    assert!(!has_nul(&entry), "a NUL would not fit PostgreSQL's jsonb");
}

#[test]
fn an_escaped_backslash_before_u0000_is_plain_text_and_links() {
    let config = r#"{"path":"C:\\u0000"}"#;
    let source = format!(r#"[{{"ref":"{AGENT}","config":{config}}}]"#);
    let plan = plan_with(in_workspace(&source));
    assert_eq!(plan.links, vec![link(AGENT, config)]);
    assert!(plan.rejects.is_empty());
}

#[test]
fn every_reject_entry_holding_a_nul_character_is_recorded_as_its_text() {
    // Shadowed entries, a non-array value, extra keys and the job_agent_id pair.
    let nul_key = r#"{"\u0000":1}"#;
    let shadowing = LegacyDeployment {
        workspace_id: Some(key(WORKSPACE)),
        job_agent_id: Some(key(AGENT)),
        job_agent_config: Some(r#"{"x":"\u0000"}"#),
        job_agents: Some(r#"["\u0000", {"ref":"\u0000"}]"#),
    };
    let extra = format!(r#"[{{"ref":"{AGENT}","note":"\u0000"}}]"#);
    for plan in [
        plan_with(shadowing),
        plan_with(in_workspace(nul_key)),
        plan_with(in_workspace(&extra)),
    ] {
        assert!(!plan.rejects.is_empty());
        for reject in &plan.rejects {
            assert!(!has_nul(&stored(&reject.entry)), "{reject:?}");
        }
    }
    let single = plan_with(LegacyDeployment {
        workspace_id: Some(key(WORKSPACE)),
        job_agent_id: Some(key(AGENT)),
        job_agent_config: Some(r#"{"x":"\u0000"}"#),
        job_agents: None,
    });
    assert!(single.links.is_empty());
    assert_eq!(reasons(&single), vec![(None, RejectReason::InvalidConfig)]);
}
