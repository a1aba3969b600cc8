"""The catalogue queries of the schema pool (``tests/schemas.py``), apart so that module stays
under the project's 400 lines: what a schema is (``_CATALOG``, and on a Citus coordinator
``_PLACEMENT``), and what a reset needs of it (``_HOLDS``)."""

# the names as text: a bare '' in the first branch made the column `name`, the other branches'
# `relname || '.' || conname` cut to 63 bytes, so two constraints or columns differing past that
# (`ledger_consumer_checkpoints.ledger_consumer_checkpoints_position_check`) were one
_CATALOG = """
SELECT 'schema', ''::text, pg_get_userbyid(n.nspowner) || ' ' || coalesce(n.nspacl::text, '')
       || ' ' || coalesce(obj_description(n.oid, 'pg_namespace'), '')
  FROM pg_namespace n WHERE n.oid = %(oid)s
UNION ALL
SELECT 'relation', c.relname, c.relkind::text || ' ' || pg_get_userbyid(c.relowner) || ' '
       || coalesce(c.relacl::text, '') || ' ' || coalesce(obj_description(c.oid, 'pg_class'), '')
       || ' ' || c.relpersistence::text || ' ' || coalesce(c.reloptions::text, '')
  FROM pg_class c WHERE c.relnamespace = %(oid)s
UNION ALL
SELECT 'column', c.relname || '.' || a.attname, a.attnum::text || ' '
       || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull || ' '
       || coalesce(pg_get_expr(d.adbin, d.adrelid), '') || ' ' || coalesce(a.attacl::text, '')
       || ' ' || coalesce(col_description(c.oid, a.attnum), '')
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE c.relnamespace = %(oid)s AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'constraint', c.relname || '.' || k.conname, pg_get_constraintdef(k.oid)
  FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid WHERE c.relnamespace = %(oid)s
UNION ALL
SELECT 'index', i.relname, pg_get_indexdef(i.oid)
  FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE i.relnamespace = %(oid)s
UNION ALL
SELECT 'trigger', c.relname || '.' || t.tgname, t.tgenabled::text || ' ' || pg_get_triggerdef(t.oid)
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = %(oid)s AND NOT t.tgisinternal
UNION ALL
SELECT 'function', p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       md5(replace(pg_get_functiondef(p.oid), %(name)s, '<schema>')) || ' ' || pg_get_userbyid(p.proowner) || ' '
       || coalesce(p.proacl::text, '')
  FROM pg_proc p WHERE p.pronamespace = %(oid)s
UNION ALL
-- a type of a relation pg_class shows: a Citus coordinator hides its placements of the
-- reference tables (relname_SHARDID, different in every schema) from pg_class, not their types
SELECT 'type', t.typname, t.typtype::text || ' ' || pg_get_userbyid(t.typowner) || ' '
       || coalesce(t.typacl::text, '')
  FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem AND e.typrelid <> 0
 WHERE t.typnamespace = %(oid)s
   AND (coalesce(nullif(t.typrelid, 0), e.typrelid) IS NULL
        OR EXISTS (SELECT FROM pg_class c WHERE c.oid = coalesce(nullif(t.typrelid, 0), e.typrelid)))
UNION ALL
SELECT 'sequence', s.sequencename, coalesce(s.last_value::text, 'unused') || ' '
       || s.start_value::text || ' ' || s.increment_by::text
  FROM pg_sequences s WHERE s.schemaname = %(name)s
UNION ALL
SELECT 'default privileges', d.defaclobjtype::text, d.defaclacl::text
  FROM pg_default_acl d WHERE d.defaclnamespace = %(oid)s
UNION ALL
SELECT 'policy', p.tablename || '.' || p.policyname, p.cmd || ' ' || coalesce(p.qual, '')
       || ' ' || coalesce(p.with_check, '')
  FROM pg_policies p WHERE p.schemaname = %(name)s
"""


# what a reset needs of a schema, in one round trip: its tables, the foreign keys between
# them, the routines that pin their search_path to it (signature and path, renamed), and the
# log's triggers' states (a test that switched one back on with ENABLE, not ENABLE ALWAYS)
_HOLDS = """
SELECT n.oid, ARRAY(SELECT c.relname::text FROM pg_class c
                     WHERE c.relnamespace = n.oid AND c.relkind IN ('r', 'p') ORDER BY 1),
       ARRAY(SELECT ARRAY[c.relname::text, r.relname::text] FROM pg_constraint k
               JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class r ON r.oid = k.confrelid
              WHERE k.contype = 'f' AND c.relnamespace = n.oid AND k.conrelid <> k.confrelid),
       ARRAY(SELECT ARRAY[replace(p.oid::regprocedure::text, quote_ident(%(old)s) || '.',
                                  quote_ident(%(new)s) || '.'),
                          replace(substr(setting, 13), quote_ident(%(old)s), quote_ident(%(new)s))]
               FROM pg_proc p, unnest(p.proconfig) AS setting
              WHERE p.pronamespace = n.oid AND setting LIKE 'search_path=%%'),
       ARRAY(SELECT ARRAY[t.tgname::text, t.tgenabled::text] FROM pg_trigger t
               JOIN pg_class c ON c.oid = t.tgrelid
              WHERE c.relnamespace = n.oid AND c.relname = 'ledger_events' AND NOT t.tgisinternal)
  FROM pg_namespace n WHERE n.nspname = %(old)s
"""


# on a Citus coordinator, where each table is placed (distributed on a column, reference,
# local): a distributed schema is never handed out as a single-server one, nor the reverse
_PLACEMENT = """
SELECT 'placement', c.relname, p.partmethod::text || ' ' || p.repmodel::text || ' '
       || coalesce(p.partkey, '')
  FROM pg_dist_partition p JOIN pg_class c ON c.oid = p.logicalrelid
 WHERE c.relnamespace = %(oid)s
"""
