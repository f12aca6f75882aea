-- The expand phase on SQLite: the backfill rules as triggers, both ways. Statements end
-- with a line holding only `$$`. The placeholders (a dollar sign, a name in braces) are
-- filled in by `backends/sqlite/sync.rs`: names from `tables.rs`, the rules' body
-- (`sync_rules.sql`), and the expressions that read an id or a reference as the rules
-- compare them (SQLite has no functions of its own to put them in).
--
-- This is the fourth spelling of `backfill/rules.rs`; `tests/tests/expand.rs` runs it and
-- the Rust rules on generated databases and requires identical links and rejects.
-- SQLite's JSON functions print values minified, so a config written during the expand
-- phase keeps its keys, order, numbers and text but not its spacing.

-- The sync guard: a row here while one side is written from the other (SQLite runs one
-- writer at a time, and the row never outlives the statement that wrote it).
CREATE TABLE IF NOT EXISTS ${guard} (active INTEGER NOT NULL)
$$

-- One legacy deployment's values, worked out a step at a time by the rules' body.
CREATE TABLE IF NOT EXISTS ${scratch} (
  idx INTEGER PRIMARY KEY,
  entry TEXT NOT NULL,
  reference TEXT,
  agent_key TEXT,
  config TEXT,
  extra INTEGER NOT NULL DEFAULT 0,
  agent,
  agent_workspace TEXT,
  found INTEGER,
  reason TEXT)
$$

DROP TRIGGER IF EXISTS ${from_legacy_insert}
$$

CREATE TRIGGER ${from_legacy_insert} AFTER INSERT ON ${deployment}
WHEN NOT EXISTS (SELECT 1 FROM ${guard})
BEGIN
  INSERT INTO ${guard} (active) VALUES (1);
${apply_rules}
  DELETE FROM ${guard};
END
$$

DROP TRIGGER IF EXISTS ${from_legacy_update}
$$

CREATE TRIGGER ${from_legacy_update} AFTER UPDATE ON ${deployment}
WHEN NOT EXISTS (SELECT 1 FROM ${guard})
  AND (OLD.id IS NOT NEW.id OR OLD.workspace_id IS NOT NEW.workspace_id
       OR OLD.job_agents IS NOT NEW.job_agents OR OLD.job_agent_id IS NOT NEW.job_agent_id
       OR OLD.job_agent_config IS NOT NEW.job_agent_config)
BEGIN
  INSERT INTO ${guard} (active) VALUES (1);
${apply_rules}
  DELETE FROM ${guard};
END
$$

DROP TRIGGER IF EXISTS ${to_legacy_insert}
$$

CREATE TRIGGER ${to_legacy_insert} AFTER INSERT ON ${join_table}
WHEN NOT EXISTS (SELECT 1 FROM ${guard})
BEGIN
  INSERT INTO ${guard} (active) VALUES (1);
  ${write_legacy_of_new}
  DELETE FROM ${guard};
END
$$

DROP TRIGGER IF EXISTS ${to_legacy_update}
$$

CREATE TRIGGER ${to_legacy_update} AFTER UPDATE ON ${join_table}
WHEN NOT EXISTS (SELECT 1 FROM ${guard})
BEGIN
  INSERT INTO ${guard} (active) VALUES (1);
  ${write_legacy_of_new}
  ${write_legacy_of_old}
  DELETE FROM ${guard};
END
$$

DROP TRIGGER IF EXISTS ${to_legacy_delete}
$$

CREATE TRIGGER ${to_legacy_delete} AFTER DELETE ON ${join_table}
WHEN NOT EXISTS (SELECT 1 FROM ${guard})
BEGIN
  INSERT INTO ${guard} (active) VALUES (1);
  ${write_legacy_of_old}
  DELETE FROM ${guard};
END
