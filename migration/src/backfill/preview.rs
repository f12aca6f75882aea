//! A dry run: what `up` would do to a legacy database, found by the same rules and the same
//! reads as the backfill, writing nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseConnection;
use serde::Serialize;
use serde_json::value::RawValue;

use super::agents::AgentDirectory;
use super::rules::{self, RejectReason};
use super::source::{self, Page};
use crate::tables::DEPLOYMENT;
use online_migration::context::Context;

/// Examples kept per reject reason.
const EXAMPLES_PER_REASON: usize = 3;
/// Deployment ids listed among those whose agents would change meaning.
const CHANGED_LISTED: usize = 50;

/// What `up` would do.
#[derive(Debug, Serialize)]
pub struct Preview {
    /// Deployments read.
    pub deployments: u64,
    /// Links that would be written.
    pub links: u64,
    /// Reject rows that would be recorded, by reason, in check order.
    pub rejects: BTreeMap<RejectReason, ReasonPreview>,
    /// Deployments whose agents would not be what the old application used.
    pub changed: ChangedDeployments,
}

/// The rejects of one reason.
#[derive(Debug, Default, Serialize)]
pub struct ReasonPreview {
    /// How many rows.
    pub count: u64,
    /// The first few.
    pub examples: Vec<RejectExample>,
}

/// One reject row as it would be recorded.
#[derive(Debug, Serialize)]
pub struct RejectExample {
    /// The deployment's id.
    pub deployment_id: String,
    /// The legacy column the value is in.
    pub legacy_column: &'static str,
    /// Its position in `job_agents`, when it is one element.
    pub entry_index: Option<i64>,
    /// The value, as JSON.
    pub entry: Box<RawValue>,
}

/// Deployments whose agents would change meaning.
#[derive(Debug, Default, Serialize)]
pub struct ChangedDeployments {
    /// How many.
    pub count: u64,
    /// The first of them.
    pub ids: Vec<String>,
}

/// Reads every deployment and applies the backfill rules, changing nothing.
pub async fn preview(ctx: &Context, conn: &DatabaseConnection) -> Result<Preview, DbErr> {
    if !SchemaManager::new(conn)
        .has_column(DEPLOYMENT, "job_agents")
        .await?
    {
        return Err(DbErr::Custom(
            "nothing to preview: `deployment` has no `job_agents` column (already migrated?)"
                .to_owned(),
        ));
    }
    let batch_size = ctx.settings.batch_size;
    let agents = AgentDirectory::load(conn).await?;
    let mut preview = Preview {
        deployments: 0,
        links: 0,
        rejects: BTreeMap::new(),
        changed: ChangedDeployments::default(),
    };
    let mut cursor = None;
    loop {
        let page = Page {
            after: cursor.as_ref(),
            limit: batch_size,
            locked: false,
        };
        let batch = source::read_page(conn, page, super::BATCH_BYTES).await?;
        let Some(last) = batch.last() else { break };
        cursor = Some(last.id.clone());
        for row in &batch {
            let plan = rules::plan_deployment(&row.as_legacy(), |id| agents.facts(id));
            preview.add(&row.id.key().to_string(), &plan);
        }
    }
    Ok(preview)
}

impl Preview {
    fn add(&mut self, deployment_id: &str, plan: &rules::Plan) {
        self.deployments += 1;
        self.links += plan.links.len() as u64;
        for reject in &plan.rejects {
            let reason = self.rejects.entry(reject.reason).or_default();
            reason.count += 1;
            if reason.examples.len() < EXAMPLES_PER_REASON {
                reason.examples.push(RejectExample {
                    deployment_id: deployment_id.to_owned(),
                    legacy_column: reject.column.as_str(),
                    entry_index: reject.entry_index,
                    entry: RawValue::from_string(reject.entry.to_string())
                        .expect("reject entries are JSON"),
                });
            }
        }
        if plan
            .rejects
            .iter()
            .any(rules::PlannedReject::changes_meaning)
        {
            self.changed.count += 1;
            if self.changed.ids.len() < CHANGED_LISTED {
                self.changed.ids.push(deployment_id.to_owned());
            }
        }
    }

    /// The report for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "preview of `up` (nothing was changed)");
        let _ = writeln!(out, "  deployments read:             {}", self.deployments);
        let _ = writeln!(out, "  links that would be written:  {}", self.links);
        let total: u64 = self.rejects.values().map(|r| r.count).sum();
        let _ = writeln!(out, "  reject rows:                  {total}");
        for (reason, found) in &self.rejects {
            let _ = writeln!(out, "    {:<26} {}", reason.as_str(), found.count);
            for example in &found.examples {
                let position = match example.entry_index {
                    Some(index) => format!("{}[{index}]", example.legacy_column),
                    None => example.legacy_column.to_owned(),
                };
                let _ = writeln!(
                    out,
                    "      deployment {} {position}: {}",
                    example.deployment_id,
                    shorten(example.entry.get(), 100)
                );
            }
        }
        let _ = writeln!(
            out,
            "  deployments whose agents would change meaning: {}",
            self.changed.count
        );
        for id in &self.changed.ids {
            let _ = writeln!(out, "    {id}");
        }
        if self.changed.count > self.changed.ids.len() as u64 {
            let more = self.changed.count - self.changed.ids.len() as u64;
            let _ = writeln!(out, "    … and {more} more");
        }
        out
    }
}

fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}
