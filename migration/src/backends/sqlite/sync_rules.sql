  -- The rules, applied to NEW (the body of both legacy-side triggers). SQLite triggers have
  -- no variables, so each entry's facts are worked out a step at a time in the scratch
  -- table; the single agent (`job_agent_id` set) is its row -1.
  DELETE FROM ${join_table} WHERE deployment_id = NEW.id;
  DELETE FROM ${scratch};
  INSERT INTO ${scratch} (idx, entry, reference, agent_key, config, extra, reason)
  SELECT -1,
    '{"ref":' || json_quote(${single_agent_display}) || ',"config":'
      || CASE WHEN NEW.job_agent_config IS NULL THEN 'null'
              WHEN json_valid(${config}) THEN ${config}
              ELSE json_quote(NEW.job_agent_config) END || '}',
    '', ${single_agent_key},
    CASE WHEN json_valid(${config}) THEN json(${config}) END, 0,
    CASE WHEN NEW.job_agent_config IS NOT NULL AND NOT json_valid(${config})
         THEN 'invalid_json' END
  WHERE NEW.job_agent_id IS NOT NULL;
  -- An entry is a string (the reference) or an object with a string "ref".
  INSERT INTO ${scratch} (idx, entry, reference, config, extra)
  SELECT e.key, ${entry_text},
    CASE WHEN e.type = 'text' THEN e.atom
         WHEN e.type = 'object' AND json_type(e.value, '$.ref') = 'text'
         THEN json_extract(e.value, '$.ref') END,
    CASE WHEN e.type = 'object' THEN ${entry_config_text} END,
    e.type = 'object' AND EXISTS (
      SELECT 1 FROM json_each(e.value) k
      WHERE k.key NOT IN ('ref', 'config') AND NOT (
        k.type = 'null' OR (k.type = 'text' AND k.atom = '')
        OR (k.type = 'array' AND json_array_length(k.value) = 0)
        OR (k.type = 'object' AND k.value = '{}')))
  FROM json_each(CASE WHEN NEW.job_agent_id IS NULL AND json_valid(${agents})
                      AND json_type(${agents}) = 'array' THEN ${agents} ELSE '[]' END) e;
  UPDATE ${scratch} SET agent_key = ${reference_key} WHERE idx >= 0 AND reference IS NOT NULL;
  -- The agent: by its id as usually stored, else by what any stored spelling means.
  UPDATE ${scratch} SET (agent, agent_workspace, found) = (
    SELECT a.id, ${agent_workspace_key}, 1 FROM ${job_agent} a
    WHERE a.id IN (${hyphenated_key}, upper(${hyphenated_key})) LIMIT 1)
  WHERE agent_key IS NOT NULL;
  UPDATE ${scratch} SET (agent, agent_workspace, found) = (
    SELECT a.id, ${agent_workspace_key}, 1 FROM ${job_agent} a
    WHERE ${agent_id_key} = agent_key LIMIT 1)
  WHERE agent_key IS NOT NULL AND found IS NULL;
  -- The checks, in the rules' order; then `duplicate`: an earlier entry linked the agent.
  UPDATE ${scratch} SET reason = CASE
      WHEN reference IS NULL THEN 'malformed_entry'
      WHEN agent_key IS NULL THEN 'invalid_ref'
      WHEN found IS NULL THEN 'unknown_job_agent'
      WHEN ${deployment_workspace_key} IS NOT NULL AND agent_workspace IS NOT NULL
           AND ${deployment_workspace_key} <> agent_workspace THEN 'cross_workspace'
      WHEN config IS NULL OR json_type(config) = 'null' THEN NULL
      WHEN json_type(config) = 'object' AND NOT ${config_holds_nul} THEN NULL
      ELSE 'invalid_config' END
  WHERE reason IS NULL;
  UPDATE ${scratch} SET reason = 'duplicate'
  WHERE idx >= 0 AND reason IS NULL AND EXISTS (
    SELECT 1 FROM ${scratch} s
    WHERE s.idx >= 0 AND s.idx < ${scratch}.idx AND s.reason IS NULL
      AND s.agent_key = ${scratch}.agent_key);
  INSERT INTO ${join_table} (deployment_id, job_agent_id, config)
  SELECT NEW.id, agent, CASE WHEN config IS NULL OR json_type(config) = 'null' THEN '{}'
                             ELSE config END
  FROM ${scratch} WHERE reason IS NULL ORDER BY idx;
  -- Whole values: not JSON, not an array, shadowed by job_agent_id, a config of no agent
  -- (as written, trimmed: a value holding a NUL character is recorded as that text).
  INSERT INTO ${scratch} (idx, entry, reference, extra, reason)
  SELECT -2, json_quote(NEW.job_agents), '', 0, 'invalid_json'
  WHERE NEW.job_agents IS NOT NULL AND NOT json_valid(${agents});
  INSERT INTO ${scratch} (idx, entry, reference, extra, reason)
  SELECT -3, ${agents}, '', 0,
    CASE WHEN NEW.job_agent_id IS NULL THEN 'not_an_array' ELSE 'shadowed_by_job_agent_id' END
  WHERE json_valid(${agents}) AND json_type(${agents}) NOT IN ('array', 'null');
  INSERT INTO ${scratch} (idx, entry, reference, extra, reason)
  SELECT 1000000000 + e.key, ${entry_text}, '', 0, 'shadowed_by_job_agent_id'
  FROM json_each(CASE WHEN NEW.job_agent_id IS NOT NULL AND json_valid(${agents})
                      AND json_type(${agents}) = 'array' THEN ${agents} ELSE '[]' END) e;
  INSERT INTO ${scratch} (idx, entry, reference, extra, reason)
  SELECT -4, CASE WHEN json_valid(${config}) THEN ${config}
                  ELSE json_quote(NEW.job_agent_config) END, '', 0,
    CASE WHEN json_valid(${config}) THEN 'orphan_config' ELSE 'invalid_json' END
  WHERE NEW.job_agent_id IS NULL AND NEW.job_agent_config IS NOT NULL
    AND NOT (json_valid(${config}) AND (json_type(${config}) = 'null'
                                        OR json(${config}) = '{}'));
  -- Every reject not recorded yet; an entry holding a NUL character as a string of its text.
  INSERT INTO ${reject_table} (deployment_id, legacy_column, entry_index, entry, reason)
  SELECT NEW.id, c.legacy_column, c.entry_index, c.stored, c.reason FROM (
    SELECT CASE WHEN idx = -1 THEN 'job_agent_id' WHEN idx = -4 THEN 'job_agent_config'
                ELSE 'job_agents' END AS legacy_column,
           CASE WHEN idx >= 1000000000 THEN idx - 1000000000 WHEN idx >= 0 THEN idx END
             AS entry_index,
           CASE WHEN ${entry_holds_nul} THEN json_quote(entry) ELSE entry END AS stored,
           COALESCE(reason, 'extra_keys_dropped') AS reason, idx
    FROM ${scratch} WHERE reason IS NOT NULL OR extra) c
  WHERE NOT EXISTS (
    SELECT 1 FROM ${reject_table} r
    WHERE r.deployment_id = NEW.id AND r.legacy_column = c.legacy_column
      AND r.entry_index IS c.entry_index AND r.reason = c.reason
      AND json(r.entry) = json(c.stored))
  ORDER BY c.idx;
  DELETE FROM ${scratch};
