-- The expand phase on MariaDB: the backfill rules as stored routines run by triggers, both
-- ways. Statements end with a line holding only `$$` (the script is sent a statement at a
-- time). The placeholders (a dollar sign, a name in braces) are filled in by
-- `backends/mysql/sync.rs`: names from `tables.rs`, declared types, and the expressions
-- that read an id as the rules compare it (a BINARY(16) id is its bytes, a text id is
-- whatever UUID spelling it holds).
--
-- Every routine carries the sync's version (a hash of this script once filled in) as its
-- comment: an install that finds them all in place leaves them alone, since replacing a
-- routine waits for every transaction that has called it.
--
-- This is the third spelling of `backfill/rules.rs`; `tests/tests/expand.rs` runs it and
-- the Rust rules on generated databases and requires identical links and rejects.
-- MariaDB's JSON functions print values their own way (`{"a": 1}`), so a config written
-- during the expand phase keeps its keys, order, numbers and text but not its spacing.

-- A UUID in any spelling `uuid::Uuid::parse_str` reads (hyphenated, simple, braced, URN;
-- any case) as 32 lower-case hex digits, NULL for anything else.
CREATE OR REPLACE FUNCTION ${uuid_fn}(t LONGTEXT) RETURNS CHAR(32) CHARACTER SET ascii
DETERMINISTIC NO SQL COMMENT '${version}'
RETURN CASE WHEN CHAR_LENGTH(t) IN (32, 36, 38, 45) AND t REGEXP
    '^([0-9A-Fa-f]{32}|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}|\\{[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\\}|[Uu][Rr][Nn]:[Uu][Uu][Ii][Dd]:[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})$'
  THEN LOWER(RIGHT(REPLACE(REPLACE(REPLACE(t, '{', ''), '}', ''), '-', ''), 32)) END
$$

-- Text without the Unicode white space the rules trim (Rust's `str::trim`).
CREATE OR REPLACE FUNCTION ${trim_fn}(t LONGTEXT) RETURNS LONGTEXT
DETERMINISTIC NO SQL COMMENT '${version}'
RETURN REGEXP_REPLACE(t, '^${unicode_space}+|${unicode_space}+$', '')
$$

-- What a text id means (`IdKey`): its UUID when it is one once trimmed, else its text.
CREATE OR REPLACE FUNCTION ${id_key_fn}(t LONGTEXT) RETURNS LONGTEXT
DETERMINISTIC NO SQL COMMENT '${version}'
RETURN COALESCE(${uuid_fn}(${trim_fn}(t)), CONCAT('~', t))
$$

-- A 32-digit key spelled as a hyphenated UUID.
CREATE OR REPLACE FUNCTION ${hyphenated_fn}(k LONGTEXT) RETURNS LONGTEXT
DETERMINISTIC NO SQL COMMENT '${version}'
RETURN CONCAT_WS('-', SUBSTR(k, 1, 8), SUBSTR(k, 9, 4), SUBSTR(k, 13, 4), SUBSTR(k, 17, 4),
                 SUBSTR(k, 21, 12))
$$

-- Whether JSON text holds a NUL character (`\u0000` not part of an escaped backslash):
-- no backend stores such a value as JSON.
CREATE OR REPLACE FUNCTION ${holds_nul_fn}(j LONGTEXT) RETURNS BOOLEAN
DETERMINISTIC NO SQL COMMENT '${version}'
RETURN LOCATE('\\u0000', REPLACE(j, '\\\\', '')) > 0
$$

-- Null, "", [] and {} carry nothing.
CREATE OR REPLACE FUNCTION ${empty_fn}(j LONGTEXT) RETURNS BOOLEAN
DETERMINISTIC NO SQL COMMENT '${version}'
RETURN CASE JSON_TYPE(j)
    WHEN 'NULL' THEN TRUE
    WHEN 'STRING' THEN j = '""'
    WHEN 'ARRAY' THEN JSON_LENGTH(j) = 0
    WHEN 'OBJECT' THEN JSON_LENGTH(j) = 0
    ELSE FALSE END
$$

-- Stored text as JSON (trimmed as the rules trim it), NULL when it is not JSON.
CREATE OR REPLACE FUNCTION ${json_fn}(t LONGTEXT) RETURNS LONGTEXT
DETERMINISTIC NO SQL COMMENT '${version}'
RETURN CASE WHEN JSON_VALID(${trim_fn}(t)) THEN ${trim_fn}(t) END
$$

-- Records a reject unless the same one is recorded. `entry` is JSON text; one holding a
-- NUL character is stored as a JSON string of its text.
CREATE OR REPLACE PROCEDURE ${reject_fn}(
  p_deployment ${deployment_id_type}, p_column VARCHAR(32), p_index BIGINT,
  p_entry LONGTEXT, p_reason VARCHAR(32))
MODIFIES SQL DATA COMMENT '${version}'
BEGIN
  DECLARE stored LONGTEXT DEFAULT IF(${holds_nul_fn}(p_entry), JSON_QUOTE(p_entry), p_entry);
  IF NOT EXISTS (
    SELECT 1 FROM ${reject_table} r
    WHERE r.deployment_id = p_deployment AND r.legacy_column = p_column
      AND r.entry_index <=> p_index AND r.reason = p_reason AND JSON_EQUALS(r.entry, stored))
  THEN
    INSERT INTO ${reject_table} (deployment_id, legacy_column, entry_index, entry, reason)
      VALUES (p_deployment, p_column, p_index, stored, p_reason);
  END IF;
END
$$

-- The checks an agent reference and its config go through, in the rules' order:
-- invalid_ref, unknown_job_agent, cross_workspace, invalid_config. Either `agent` and
-- `link_config` (the link), or `reason`.
CREATE OR REPLACE PROCEDURE ${check_fn}(
  agent_ref CHAR(32), config LONGTEXT, deployment_workspace LONGTEXT,
  OUT agent ${job_agent_id_type}, OUT link_config LONGTEXT, OUT reason VARCHAR(32))
READS SQL DATA COMMENT '${version}'
BEGIN
  DECLARE agent_workspace LONGTEXT;
  SET agent = NULL, link_config = NULL, reason = NULL;
  IF agent_ref IS NULL THEN
    SET reason = 'invalid_ref';
  ELSE
    SELECT a.id, ${agent_workspace_key} INTO agent, agent_workspace
      FROM ${job_agent} a WHERE ${agent_is_ref} LIMIT 1;
    IF agent IS NULL THEN
      -- Ids kept as text in another spelling: compared by what they mean.
      SELECT a.id, ${agent_workspace_key} INTO agent, agent_workspace
        FROM ${job_agent} a WHERE ${agent_means_ref} LIMIT 1;
    END IF;
    IF agent IS NULL THEN
      SET reason = 'unknown_job_agent';
    ELSEIF deployment_workspace IS NOT NULL AND agent_workspace IS NOT NULL
           AND deployment_workspace <> agent_workspace THEN
      SET reason = 'cross_workspace';
    ELSEIF config IS NULL OR JSON_TYPE(config) = 'NULL' THEN
      SET link_config = '{}';
    ELSEIF JSON_TYPE(config) = 'OBJECT' AND NOT ${holds_nul_fn}(config) THEN
      SET link_config = config;
    ELSE
      SET reason = 'invalid_config';
    END IF;
    IF reason IS NOT NULL THEN
      SET agent = NULL;
    END IF;
  END IF;
END
$$

-- A legacy write, applied to the links by the rules: the deployment's links replaced, its
-- rejects recorded.
CREATE OR REPLACE PROCEDURE ${from_legacy_fn}(
  deployment ${deployment_id_type}, deployment_workspace LONGTEXT,
  single_agent ${single_agent_type}, config_text LONGTEXT, agents_text LONGTEXT)
MODIFIES SQL DATA COMMENT '${version}'
BEGIN
  DECLARE agents LONGTEXT DEFAULT ${json_fn}(agents_text);
  DECLARE config LONGTEXT DEFAULT ${json_fn}(config_text);
  DECLARE single_ref LONGTEXT;
  DECLARE single_entry LONGTEXT;
  DECLARE shadowed VARCHAR(32);
  DECLARE entry LONGTEXT;
  DECLARE idx BIGINT DEFAULT 0;
  DECLARE entries BIGINT;
  DECLARE reference LONGTEXT;
  DECLARE entry_config LONGTEXT;
  DECLARE extra_values LONGTEXT;
  DECLARE extra BOOLEAN;
  DECLARE e BIGINT;
  DECLARE agent ${job_agent_id_type};
  DECLARE link_config LONGTEXT;
  DECLARE reason VARCHAR(32);
  DECLARE linked LONGTEXT DEFAULT ',';

  DELETE FROM ${join_table} WHERE deployment_id = deployment;
  IF single_agent IS NOT NULL THEN
    -- One link (job_agent_id, job_agent_config); job_agents was never read.
    SET single_ref = ${single_agent_display};
    SET single_entry = CONCAT('{"ref":', JSON_QUOTE(single_ref), ',"config":',
      CASE WHEN config_text IS NULL THEN 'null'
           ELSE COALESCE(config, JSON_QUOTE(config_text)) END, '}');
    IF config_text IS NOT NULL AND config IS NULL THEN
      CALL ${reject_fn}(deployment, 'job_agent_id', NULL, single_entry, 'invalid_json');
    ELSE
      CALL ${check_fn}(${single_agent_key}, config, deployment_workspace,
                       agent, link_config, reason);
      IF reason IS NULL THEN
        INSERT INTO ${join_table} (deployment_id, job_agent_id, config)
          VALUES (deployment, agent, link_config);
      ELSE
        CALL ${reject_fn}(deployment, 'job_agent_id', NULL, single_entry, reason);
      END IF;
    END IF;
    SET shadowed = 'shadowed_by_job_agent_id';
  END IF;

  IF agents_text IS NULL OR JSON_TYPE(agents) = 'NULL' THEN
    SET agents = NULL;
  ELSEIF agents IS NULL THEN
    CALL ${reject_fn}(deployment, 'job_agents', NULL, JSON_QUOTE(agents_text), 'invalid_json');
  ELSEIF JSON_TYPE(agents) <> 'ARRAY' THEN
    CALL ${reject_fn}(deployment, 'job_agents', NULL, agents,
                      COALESCE(shadowed, 'not_an_array'));
  ELSE
    SET entries = JSON_LENGTH(agents);
    WHILE idx < entries DO
      SET entry = JSON_EXTRACT(agents, CONCAT('$[', idx, ']'));
      IF shadowed IS NOT NULL THEN
        CALL ${reject_fn}(deployment, 'job_agents', idx, entry, shadowed);
      ELSE
        -- An entry is a string (the reference) or an object with a string "ref".
        SET reference = NULL, entry_config = NULL, extra = FALSE;
        IF JSON_TYPE(entry) = 'STRING' THEN
          SET reference = JSON_UNQUOTE(entry);
        ELSEIF JSON_TYPE(entry) = 'OBJECT'
               AND JSON_TYPE(JSON_EXTRACT(entry, '$.ref')) = 'STRING' THEN
          SET reference = JSON_UNQUOTE(JSON_EXTRACT(entry, '$.ref'));
          SET entry_config = JSON_EXTRACT(entry, '$.config');
          SET extra_values = JSON_EXTRACT(JSON_REMOVE(entry, '$.ref', '$.config'), '$.*');
          SET e = 0;
          WHILE NOT extra AND e < COALESCE(JSON_LENGTH(extra_values), 0) DO
            SET extra = NOT ${empty_fn}(JSON_EXTRACT(extra_values, CONCAT('$[', e, ']')));
            SET e = e + 1;
          END WHILE;
        END IF;
        IF reference IS NULL THEN
          CALL ${reject_fn}(deployment, 'job_agents', idx, entry, 'malformed_entry');
        ELSE
          CALL ${check_fn}(${uuid_fn}(reference), entry_config, deployment_workspace,
                           agent, link_config, reason);
          IF reason IS NULL AND LOCATE(CONCAT(',', ${uuid_fn}(reference), ','), linked) > 0 THEN
            SET reason = 'duplicate';
          END IF;
          IF reason IS NOT NULL THEN
            CALL ${reject_fn}(deployment, 'job_agents', idx, entry, reason);
          ELSE
            INSERT INTO ${join_table} (deployment_id, job_agent_id, config)
              VALUES (deployment, agent, link_config);
            SET linked = CONCAT(linked, ${uuid_fn}(reference), ',');
            IF extra THEN
              CALL ${reject_fn}(deployment, 'job_agents', idx, entry,
                                'extra_keys_dropped');
            END IF;
          END IF;
        END IF;
      END IF;
      SET idx = idx + 1;
    END WHILE;
  END IF;

  IF single_agent IS NULL AND config_text IS NOT NULL THEN
    -- A config without an agent: recorded unless it is null or {}.
    IF config IS NULL THEN
      CALL ${reject_fn}(deployment, 'job_agent_config', NULL, JSON_QUOTE(config_text),
                        'invalid_json');
    ELSEIF NOT (JSON_TYPE(config) = 'NULL'
                OR (JSON_TYPE(config) = 'OBJECT' AND JSON_LENGTH(config) = 0)) THEN
      CALL ${reject_fn}(deployment, 'job_agent_config', NULL, config, 'orphan_config');
    END IF;
  END IF;
END
$$

-- A write to the links, applied to the legacy columns in the shape `down` gives them:
-- every link an entry {"ref", "config"} in agent id order, job_agent_id NULL,
-- job_agent_config {}.
CREATE OR REPLACE PROCEDURE ${to_legacy_fn}(deployment ${deployment_id_type})
MODIFIES SQL DATA COMMENT '${version}'
BEGIN
  UPDATE ${deployment} d SET
    job_agents = (
      SELECT COALESCE(JSON_ARRAYAGG(JSON_OBJECT('ref', ${link_agent_display},
                                                'config', JSON_QUERY(l.config, '$'))
                                    ORDER BY l.job_agent_id), '[]')
      FROM ${join_table} l WHERE l.deployment_id = deployment),
    job_agent_id = NULL,
    job_agent_config = '{}'
  WHERE d.id = deployment;
END
$$

-- The new version inserts deployments without the legacy columns: they get what a
-- deployment without links has in the legacy shape.
CREATE OR REPLACE TRIGGER ${legacy_defaults} BEFORE INSERT ON ${deployment} FOR EACH ROW
BEGIN
  IF NEW.job_agents IS NULL THEN
    SET NEW.job_agents = '[]';
  END IF;
  IF NEW.job_agent_config IS NULL THEN
    SET NEW.job_agent_config = '{}';
  END IF;
END
$$

-- The sync guard is a session variable, set while one side is written from the other and
-- cleared afterwards. A trigger sets it to the start of the statement that fired it
-- (`NOW(6)`: the same in every trigger and routine that statement runs, different for the
-- next one), and it holds only for that statement: a deadlock ends a statement without
-- running its exit handler, and the guard it left must not switch the sync off for the
-- session's next writes. The migration's own writes set it to a value that holds until
-- they clear it.
CREATE OR REPLACE TRIGGER ${from_legacy_insert} AFTER INSERT ON ${deployment} FOR EACH ROW
BEGIN
  DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN SET ${guard} = NULL; RESIGNAL; END;
  IF NOT ${guard_held} THEN
    SET ${guard} = ${guard_token};
    CALL ${from_legacy_fn}(NEW.id, ${new_workspace_key}, NEW.job_agent_id,
                           NEW.job_agent_config, NEW.job_agents);
    SET ${guard} = NULL;
  END IF;
END
$$

CREATE OR REPLACE TRIGGER ${from_legacy_update} AFTER UPDATE ON ${deployment} FOR EACH ROW
BEGIN
  DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN SET ${guard} = NULL; RESIGNAL; END;
  IF NOT ${guard_held} AND NOT (BINARY OLD.id <=> BINARY NEW.id
      AND BINARY OLD.workspace_id <=> BINARY NEW.workspace_id
      AND BINARY OLD.job_agents <=> BINARY NEW.job_agents
      AND BINARY OLD.job_agent_id <=> BINARY NEW.job_agent_id
      AND BINARY OLD.job_agent_config <=> BINARY NEW.job_agent_config) THEN
    SET ${guard} = ${guard_token};
    CALL ${from_legacy_fn}(NEW.id, ${new_workspace_key}, NEW.job_agent_id,
                           NEW.job_agent_config, NEW.job_agents);
    SET ${guard} = NULL;
  END IF;
END
$$

CREATE OR REPLACE TRIGGER ${to_legacy_insert} AFTER INSERT ON ${join_table} FOR EACH ROW
BEGIN
  DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN SET ${guard} = NULL; RESIGNAL; END;
  IF NOT ${guard_held} THEN
    SET ${guard} = ${guard_token};
    CALL ${to_legacy_fn}(NEW.deployment_id);
    SET ${guard} = NULL;
  END IF;
END
$$

CREATE OR REPLACE TRIGGER ${to_legacy_update} AFTER UPDATE ON ${join_table} FOR EACH ROW
BEGIN
  DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN SET ${guard} = NULL; RESIGNAL; END;
  IF NOT ${guard_held} THEN
    SET ${guard} = ${guard_token};
    CALL ${to_legacy_fn}(NEW.deployment_id);
    IF NOT (BINARY OLD.deployment_id <=> BINARY NEW.deployment_id) THEN
      CALL ${to_legacy_fn}(OLD.deployment_id);
    END IF;
    SET ${guard} = NULL;
  END IF;
END
$$

CREATE OR REPLACE TRIGGER ${to_legacy_delete} AFTER DELETE ON ${join_table} FOR EACH ROW
BEGIN
  DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN SET ${guard} = NULL; RESIGNAL; END;
  IF NOT ${guard_held} THEN
    SET ${guard} = ${guard_token};
    CALL ${to_legacy_fn}(OLD.deployment_id);
    SET ${guard} = NULL;
  END IF;
END
