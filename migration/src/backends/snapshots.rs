//! The SQL each backend generates, pinned by snapshot (`snapshots/*.snap`): a reviewer of a
//! change to a backend reads the SQL that changes, not only the code that builds it. After a
//! deliberate change, `cargo insta review` (or `INSTA_UPDATE=always`) updates the files.

use std::time::Duration;

use super::column_decl::{ColumnDecl, ForeignKeyDecl};
use super::{
    Backend, ConstraintStep, SyncTarget, TableLock, mysql::MySql, postgres::Postgres,
    sqlite::Sqlite,
};
use online_migration::backends::{self as probe, Probe};
use sea_orm_migration::sea_orm::Statement;

/// The legacy columns as an old application declared them, in this backend's type names.
fn legacy_columns(json: &str, id: &str) -> Vec<ColumnDecl> {
    let column = |name: &str, declared_type: &str, not_null, default: Option<&str>| ColumnDecl {
        name: name.to_owned(),
        declared_type: declared_type.to_owned(),
        not_null,
        default: default.map(str::to_owned),
        check: None,
        foreign_key: None,
    };
    let mut job_agent_id = column("job_agent_id", id, false, None);
    job_agent_id.foreign_key = Some(ForeignKeyDecl {
        name: Some("deployment_job_agent_id_fkey".to_owned()),
        table: "job_agent".to_owned(),
        column: "id".to_owned(),
        on_delete: "SET NULL".to_owned(),
    });
    vec![
        column("job_agents", json, true, Some("'[]'")),
        job_agent_id,
        column("job_agent_config", json, true, None),
    ]
}

/// Everything `backend` generates from fixed inputs, as one readable text.
/// `SHARE ROW EXCLUSIVE on job_agent, then SHARE ROW EXCLUSIVE on deployment_job_agent`.
fn locks(step: &ConstraintStep) -> String {
    let Some(first) = step.lock else {
        return "none".to_owned();
    };
    let mut out = format!("{} on {}", first.mode, first.table);
    for lock in &step.then {
        out.push_str(&format!(", then {} on {}", lock.mode, lock.table));
    }
    out
}

/// `probe` is the engine's half of the same backend (lock waits, replicas).
fn generated_sql(
    backend: &dyn Backend,
    probe: &dyn Probe,
    schema: &str,
    json: &str,
    id: &str,
) -> String {
    let mut out = String::new();
    let mut section = |title: &str, lines: Vec<String>| {
        out.push_str(&format!("-- {title}\n"));
        for line in lines {
            out.push_str(&line);
            out.push_str(";\n");
        }
        out.push('\n');
    };
    let statements = |statements: Vec<Statement>| {
        statements
            .iter()
            .map(|s| match &s.values {
                Some(values) => format!("{}  /* {:?} */", s.sql, values.0),
                None => s.sql.clone(),
            })
            .collect::<Vec<_>>()
    };
    section(
        "bound lock waits (1 s)",
        statements(probe.bound_lock_waits(Duration::from_secs(1))),
    );
    section(
        "unbound lock waits",
        // What each locked step runs before its connection goes back: the engine's
        // unbinding, then the session reset `Migrator::with` gives the context.
        statements([probe.unbound_lock_waits(), backend.session_reset()].concat()),
    );
    let then = [
        TableLock::exclusive("deployment_job_agent"),
        TableLock::access_exclusive("job_agent"),
    ];
    section(
        "lock in order: deployment first, then the rest at once",
        statements(probe.lock_in_order(TableLock::access_exclusive("deployment"), &then)),
    );
    section(
        "capture triggers, as steps on a table the application writes",
        steps(backend.live_trigger_steps(backend.capture_triggers())),
    );
    section("capture every update", backend.capture_every_update());
    let target = SyncTarget {
        schema: schema.to_owned(),
        deployment_id_type: id.to_owned(),
        job_agent_id_type: id.to_owned(),
        deployment_workspace_id_type: id.to_owned(),
        legacy_job_agent_id_type: id.to_owned(),
        job_agent_workspace_id_type: id.to_owned(),
        job_agents_type: json.to_owned(),
        job_agent_config_type: json.to_owned(),
    };
    section(
        "sync triggers (the expand phase), the triggers as steps on tables the application writes",
        {
            let (triggers, routines): (Vec<String>, Vec<String>) =
                (backend.sync_triggers(&target).into_iter())
                    .partition(|sql| super::is_trigger_ddl(sql));
            let mut all = routines;
            all.extend(steps(backend.live_trigger_steps(triggers)));
            all
        },
    );
    section(
        "remove the sync triggers",
        backend.remove_sync_triggers(&target),
    );
    section(
        "is the sync installed",
        statements(vec![
            backend.trigger_exists(crate::tables::SYNC_FROM_LEGACY_UPDATE_TRIGGER),
        ]),
    );
    section("sync guard", statements(backend.sync_guard()));
    section(
        "remove the capture triggers",
        backend.remove_capture_triggers(),
    );
    let optional = |statement: Option<Statement>| statements(statement.into_iter().collect());
    section(
        "replica positions (for the replica-lag throttle)",
        optional(probe.replica_positions()),
    );
    section(
        "may the role see them",
        optional(probe.may_see_replica_positions()),
    );
    section(
        "prompt replicas to report",
        optional(probe.prompt_replica_reports()),
    );
    section(
        "load the join table without checks",
        backend.load_without_checks(),
    );
    section(
        "does the join table have its key",
        optional(backend.join_table_has_key("fk_deployment_job_agent_deployment")),
    );
    let key_steps = backend.join_table_key_steps(
        "fk_deployment_job_agent_deployment",
        "deployment_id",
        "deployment",
    );
    for (n, step) in key_steps.into_iter().enumerate() {
        section(
            &format!("join table key, step {} (lock: {})", n + 1, locks(&step)),
            step.statements,
        );
    }
    section("check keys again", backend.check_keys_again());
    section(
        "links breaking keys",
        optional(backend.links_breaking_keys()),
    );
    section(
        "join table statistics",
        backend.refresh_join_table_statistics(),
    );
    section(
        "the baseline's generated id default",
        backend
            .generated_id_default()
            .into_iter()
            .map(str::to_owned)
            .collect(),
    );
    let (cluster_query, cluster_note) = backend.cluster_note().unzip();
    section("on a cluster? (a row when so)", optional(cluster_query));
    section(
        "what the log says then",
        cluster_note
            .into_iter()
            .map(|n| format!("-- {n}"))
            .collect(),
    );
    section(
        "declared type of deployment.id",
        statements(vec![backend.declared_type("deployment", "id")]),
    );
    section(
        &format!(
            "facts: join table starts bare {}, index inside CREATE TABLE {}, index after \
             load {}, row locks {}, page rows locked {}",
            backend.join_table_starts_bare(),
            backend.index_inside_create_table(),
            backend.builds_index_after_load(),
            backend.has_row_locks(),
            backend.locks_page_rows()
        ),
        vec![],
    );
    for column in legacy_columns(json, id) {
        section(
            &format!("add {} back", column.name),
            backend.add_legacy_column(&column),
        );
        for (n, step) in backend.restore_constraints(&column).into_iter().enumerate() {
            section(
                &format!(
                    "restore {}, step {} (lock: {})",
                    column.name,
                    n + 1,
                    locks(&step)
                ),
                step.statements,
            );
        }
    }
    out
}

#[test]
fn postgres() {
    insta::assert_snapshot!(generated_sql(
        &Postgres,
        &probe::postgres::Postgres,
        "public",
        "jsonb",
        "uuid"
    ));
}

#[test]
fn mysql() {
    insta::assert_snapshot!(generated_sql(
        &MySql,
        &probe::mysql::MySql,
        "",
        "longtext",
        "char(36)"
    ));
}

#[test]
fn sqlite() {
    insta::assert_snapshot!(generated_sql(
        &Sqlite,
        &probe::sqlite::Sqlite,
        "",
        "TEXT",
        "TEXT"
    ));
}

/// Locked steps as one list, each step opened by a comment.
fn steps(steps: Vec<Vec<String>>) -> Vec<String> {
    let mut all = vec![];
    for (n, step) in steps.into_iter().enumerate() {
        all.push(format!("-- step {}", n + 1));
        all.extend(step);
    }
    all
}
