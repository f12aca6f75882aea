-- The expand phase on PostgreSQL: the backfill rules as triggers, both ways.
--
-- The placeholders (a dollar sign, a name in braces) are filled in by
-- `backends/postgres/sync.rs`: names from `tables.rs`, the schema, the declared types. Every function pins its search path and names our tables
-- with their schema; the trigger functions run as their owner (SECURITY DEFINER), so the
-- application's role needs no privilege on the join and reject tables.
--
-- This is the second spelling of `backfill/rules.rs`; `tests/tests/expand.rs` runs both on
-- generated databases and requires identical links and rejects.

-- A UUID in any spelling `uuid::Uuid::parse_str` reads (hyphenated, simple, braced, URN;
-- any case), NULL for anything else.
CREATE OR REPLACE FUNCTION ${schema}.${uuid_fn}(t text) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $f$
  SELECT CASE WHEN t ~ ('^([0-9A-Fa-f]{32}|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-'
                        '[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}|\{[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-'
                        '[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\}|[Uu][Rr][Nn]:[Uu]'
                        '[Uu][Ii][Dd]:[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-'
                        '[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})$')
    THEN CAST(right(translate(t, '{}-', ''), 32) AS uuid) END
$f$;

-- What a stored id means (`IdKey`): its UUID when it is one once trimmed, else its text.
CREATE OR REPLACE FUNCTION ${schema}.${id_key_fn}(t text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $f$
  SELECT COALESCE(CAST(${schema}.${uuid_fn}(btrim(t, ${unicode_space})) AS text), '~' || t)
$f$;

-- Stored text as JSON (trimmed of Unicode white space, as the rules trim it), NULL when it
-- is not JSON. `json`, not `jsonb`: it keeps the text as written, `\u0000` included.
CREATE OR REPLACE FUNCTION ${schema}.${json_fn}(t text) RETURNS json
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
  RETURN CAST(btrim(t, ${unicode_space}) AS json);
EXCEPTION WHEN data_exception THEN
  RETURN NULL;
END $f$;

-- JSON as `jsonb`, NULL when `jsonb` cannot hold it (a NUL character, a lone surrogate).
CREATE OR REPLACE FUNCTION ${schema}.${jsonb_fn}(j json) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
  RETURN CAST(j AS jsonb);
EXCEPTION WHEN data_exception THEN
  RETURN NULL;
END $f$;

-- A JSON string's text, NULL when it has none PostgreSQL can hold (NUL, lone surrogate).
CREATE OR REPLACE FUNCTION ${schema}.${string_fn}(j json) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
  RETURN j #>> '{}';
EXCEPTION WHEN data_exception THEN
  RETURN NULL;
END $f$;

-- Null, "", [] and {} carry nothing.
CREATE OR REPLACE FUNCTION ${schema}.${empty_fn}(j json) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $f$
  SELECT CASE json_typeof(j)
    WHEN 'null' THEN true
    WHEN 'string' THEN CAST(j AS text) = '""'
    WHEN 'array' THEN json_array_length(j) = 0
    WHEN 'object' THEN NOT EXISTS (SELECT FROM json_object_keys(j))
    ELSE false END
$f$;

-- Records a reject unless the same one is recorded. `entry` is JSON text; one holding a
-- NUL character is stored as a JSON string of its text.
CREATE OR REPLACE FUNCTION ${schema}.${reject_fn}(
  deployment ${deployment_id_type}, legacy_column text, entry_index bigint, entry text,
  reason text
) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
  stored jsonb := COALESCE(${schema}.${jsonb_fn}(CAST(entry AS json)), to_jsonb(entry));
BEGIN
  INSERT INTO ${schema}.${reject_table}
    (deployment_id, legacy_column, entry_index, entry, reason)
  SELECT deployment, legacy_column, entry_index, stored, reason
  WHERE NOT EXISTS (
    SELECT FROM ${schema}.${reject_table} r
    WHERE r.deployment_id = deployment AND r.legacy_column = ${reject_fn}.legacy_column
      AND r.entry_index IS NOT DISTINCT FROM ${reject_fn}.entry_index
      AND r.reason = ${reject_fn}.reason AND r.entry = stored);
END $f$;

-- The checks an agent reference and its config go through, in the rules' order:
-- invalid_ref, unknown_job_agent, cross_workspace, invalid_config. Either `agent` and
-- `config` (the link), or `reason`.
CREATE OR REPLACE FUNCTION ${schema}.${check_fn}(
  agent_ref uuid, config json, deployment_workspace text,
  OUT agent ${job_agent_id_type}, OUT link_config jsonb, OUT reason text
)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
  agent_workspace text;
BEGIN
  IF agent_ref IS NULL THEN
    reason := 'invalid_ref';
    RETURN;
  END IF;
  SELECT a.id, ${schema}.${id_key_fn}(CAST(a.workspace_id AS text))
    INTO agent, agent_workspace
    FROM ${schema}.${job_agent} a WHERE ${agent_matches} LIMIT 1;
  IF NOT FOUND THEN
    reason := 'unknown_job_agent';
  ELSIF deployment_workspace IS NOT NULL AND agent_workspace IS NOT NULL
        AND deployment_workspace <> agent_workspace THEN
    reason := 'cross_workspace';
  ELSIF config IS NULL OR json_typeof(config) = 'null' THEN
    link_config := '{}';
  ELSIF json_typeof(config) = 'object' THEN
    link_config := ${schema}.${jsonb_fn}(config);
    IF link_config IS NULL THEN
      reason := 'invalid_config';
    END IF;
  ELSE
    reason := 'invalid_config';
  END IF;
  IF reason IS NOT NULL THEN
    agent := NULL;
  END IF;
END $f$;

-- A legacy write, applied to the links by the rules: the deployment's links replaced, its
-- rejects recorded. Runs with the sync guard set, so the links' own trigger stays quiet.
CREATE OR REPLACE FUNCTION ${schema}.${from_legacy_fn}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
  workspace text := ${schema}.${id_key_fn}(CAST(NEW.workspace_id AS text));
  agents_text text := CAST(NEW.job_agents AS text);
  agents json := ${schema}.${json_fn}(agents_text);
  config_text text := CAST(NEW.job_agent_config AS text);
  config json := ${schema}.${json_fn}(config_text);
  single_ref text;
  single_entry text;
  entry json;
  position bigint;
  reference text;
  entry_config json;
  extra boolean;
  checked record;
  linked ${job_agent_id_type}[] := '{}';
  shadowed text;
BEGIN
  PERFORM set_config('${guard}', 'on', true);
  DELETE FROM ${schema}.${join_table} WHERE deployment_id = NEW.id;
  IF NEW.job_agent_id IS NOT NULL THEN
    -- One link (job_agent_id, job_agent_config); job_agents was never read.
    single_ref := COALESCE(
      CAST(${schema}.${uuid_fn}(btrim(CAST(NEW.job_agent_id AS text), ${unicode_space})) AS text),
      CAST(NEW.job_agent_id AS text));
    single_entry := '{"ref":' || CAST(to_json(single_ref) AS text) || ',"config":'
      || CASE WHEN config_text IS NULL THEN 'null'
              ELSE COALESCE(CAST(config AS text), CAST(to_json(config_text) AS text)) END
      || '}';
    IF config_text IS NOT NULL AND config IS NULL THEN
      PERFORM ${schema}.${reject_fn}(NEW.id, 'job_agent_id', NULL, single_entry, 'invalid_json');
    ELSE
      checked := ${schema}.${check_fn}(
        ${schema}.${uuid_fn}(btrim(CAST(NEW.job_agent_id AS text), ${unicode_space})),
        config, workspace);
      IF checked.reason IS NULL THEN
        INSERT INTO ${schema}.${join_table} (deployment_id, job_agent_id, config)
          VALUES (NEW.id, checked.agent, checked.link_config);
      ELSE
        PERFORM ${schema}.${reject_fn}(NEW.id, 'job_agent_id', NULL, single_entry, checked.reason);
      END IF;
    END IF;
    shadowed := 'shadowed_by_job_agent_id';
  END IF;

  IF agents_text IS NULL OR json_typeof(agents) = 'null' THEN
    NULL;
  ELSIF agents IS NULL THEN
    PERFORM ${schema}.${reject_fn}(NEW.id, 'job_agents', NULL,
      CAST(to_json(agents_text) AS text), 'invalid_json');
  ELSIF json_typeof(agents) <> 'array' THEN
    PERFORM ${schema}.${reject_fn}(NEW.id, 'job_agents', NULL, CAST(agents AS text),
      COALESCE(shadowed, 'not_an_array'));
  ELSIF shadowed IS NOT NULL THEN
    FOR entry, position IN
      SELECT e.value, e.ordinality - 1 FROM json_array_elements(agents) WITH ORDINALITY e
    LOOP
      PERFORM ${schema}.${reject_fn}(NEW.id, 'job_agents', position, CAST(entry AS text),
        shadowed);
    END LOOP;
  ELSE
    FOR entry, position IN
      SELECT e.value, e.ordinality - 1 FROM json_array_elements(agents) WITH ORDINALITY e
    LOOP
      -- An entry is a string (the reference) or an object with a string "ref".
      reference := NULL;
      entry_config := NULL;
      extra := false;
      IF json_typeof(entry) = 'string' THEN
        reference := ${schema}.${string_fn}(entry);
        IF reference IS NULL AND position('\u0000' in CAST(entry AS text)) > 0 THEN
          reference := '';
        END IF;
      ELSIF json_typeof(entry) = 'object' AND json_typeof(entry -> 'ref') = 'string' THEN
        reference := ${schema}.${string_fn}(entry -> 'ref');
        IF reference IS NULL AND position('\u0000' in CAST(entry -> 'ref' AS text)) > 0 THEN
          reference := '';
        END IF;
        entry_config := entry -> 'config';
        extra := EXISTS (
          SELECT FROM json_object_keys(entry) k
          WHERE k NOT IN ('ref', 'config') AND NOT ${schema}.${empty_fn}(entry -> k));
      END IF;
      IF reference IS NULL THEN
        PERFORM ${schema}.${reject_fn}(NEW.id, 'job_agents', position, CAST(entry AS text),
          'malformed_entry');
        CONTINUE;
      END IF;
      checked := ${schema}.${check_fn}(${schema}.${uuid_fn}(reference), entry_config, workspace);
      IF checked.reason IS NULL AND checked.agent = ANY (linked) THEN
        checked.reason := 'duplicate';
      END IF;
      IF checked.reason IS NOT NULL THEN
        PERFORM ${schema}.${reject_fn}(NEW.id, 'job_agents', position, CAST(entry AS text),
          checked.reason);
        CONTINUE;
      END IF;
      INSERT INTO ${schema}.${join_table} (deployment_id, job_agent_id, config)
        VALUES (NEW.id, checked.agent, checked.link_config);
      linked := linked || checked.agent;
      IF extra THEN
        PERFORM ${schema}.${reject_fn}(NEW.id, 'job_agents', position, CAST(entry AS text),
          'extra_keys_dropped');
      END IF;
    END LOOP;
  END IF;

  IF NEW.job_agent_id IS NULL AND config_text IS NOT NULL THEN
    -- A config without an agent: recorded unless it is null or {}.
    IF config IS NULL THEN
      PERFORM ${schema}.${reject_fn}(NEW.id, 'job_agent_config', NULL,
        CAST(to_json(config_text) AS text), 'invalid_json');
    ELSIF NOT (json_typeof(config) = 'null'
               OR (json_typeof(config) = 'object' AND ${schema}.${empty_fn}(config))) THEN
      PERFORM ${schema}.${reject_fn}(NEW.id, 'job_agent_config', NULL, CAST(config AS text),
        'orphan_config');
    END IF;
  END IF;
  PERFORM set_config('${guard}', '', true);
  RETURN NULL;
END $f$;

-- A write to the links, applied to the legacy columns in the shape `down` gives them:
-- every link an entry {"ref", "config"} in agent id order, job_agent_id NULL,
-- job_agent_config {}.
CREATE OR REPLACE FUNCTION ${schema}.${to_legacy_fn}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
  deployment ${deployment_id_type};
BEGIN
  PERFORM set_config('${guard}', 'on', true);
  FOR deployment IN
    SELECT DISTINCT d FROM unnest(ARRAY[
      CASE WHEN TG_OP <> 'INSERT' THEN OLD.deployment_id END,
      CASE WHEN TG_OP <> 'DELETE' THEN NEW.deployment_id END]) d
    WHERE d IS NOT NULL
  LOOP
    UPDATE ${schema}.${deployment} d SET
      job_agents = CAST((
        SELECT COALESCE(jsonb_agg(jsonb_build_object(
                 'ref', COALESCE(
                   CAST(${schema}.${uuid_fn}(btrim(CAST(l.job_agent_id AS text),
                     ${unicode_space})) AS text),
                   CAST(l.job_agent_id AS text)),
                 'config', l.config) ORDER BY l.job_agent_id), '[]')
        FROM ${schema}.${join_table} l WHERE l.deployment_id = d.id) AS ${job_agents_type}),
      job_agent_id = NULL,
      job_agent_config = CAST('{}' AS ${job_agent_config_type})
    WHERE d.id = deployment;
  END LOOP;
  PERFORM set_config('${guard}', '', true);
  RETURN NULL;
END $f$;

-- The new version inserts deployments without the legacy columns: they get what a
-- deployment without links has in the legacy shape (the NOT NULL check comes after this).
CREATE OR REPLACE FUNCTION ${schema}.${legacy_defaults_fn}() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
  IF NEW.job_agents IS NULL THEN
    NEW.job_agents := CAST('[]' AS ${job_agents_type});
  END IF;
  IF NEW.job_agent_config IS NULL THEN
    NEW.job_agent_config := CAST('{}' AS ${job_agent_config_type});
  END IF;
  RETURN NEW;
END $f$;

DROP TRIGGER IF EXISTS ${legacy_defaults} ON ${schema}.${deployment};
CREATE TRIGGER ${legacy_defaults} BEFORE INSERT ON ${schema}.${deployment}
  FOR EACH ROW EXECUTE FUNCTION ${schema}.${legacy_defaults_fn}();

DROP TRIGGER IF EXISTS ${from_legacy_insert} ON ${schema}.${deployment};
CREATE TRIGGER ${from_legacy_insert} AFTER INSERT ON ${schema}.${deployment}
  FOR EACH ROW WHEN (current_setting('${guard}', true) IS DISTINCT FROM 'on')
  EXECUTE FUNCTION ${schema}.${from_legacy_fn}();

DROP TRIGGER IF EXISTS ${from_legacy_update} ON ${schema}.${deployment};
CREATE TRIGGER ${from_legacy_update} AFTER UPDATE ON ${schema}.${deployment}
  FOR EACH ROW WHEN (current_setting('${guard}', true) IS DISTINCT FROM 'on' AND
    (CAST(OLD.id AS text), CAST(OLD.workspace_id AS text), CAST(OLD.job_agents AS text),
     CAST(OLD.job_agent_id AS text), CAST(OLD.job_agent_config AS text))
    IS DISTINCT FROM
    (CAST(NEW.id AS text), CAST(NEW.workspace_id AS text), CAST(NEW.job_agents AS text),
     CAST(NEW.job_agent_id AS text), CAST(NEW.job_agent_config AS text)))
  EXECUTE FUNCTION ${schema}.${from_legacy_fn}();

DROP TRIGGER IF EXISTS ${to_legacy} ON ${schema}.${join_table};
CREATE TRIGGER ${to_legacy} AFTER INSERT OR UPDATE OR DELETE ON ${schema}.${join_table}
  FOR EACH ROW WHEN (current_setting('${guard}', true) IS DISTINCT FROM 'on')
  EXECUTE FUNCTION ${schema}.${to_legacy_fn}();
