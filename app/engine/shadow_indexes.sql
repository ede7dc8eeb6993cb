-- Quarry's shadow indexes for FerretDB 1.24 on PostgreSQL (run by the embedded
-- engine at every start, in the `ferretdb` database, before FerretDB serves).
--
-- Why: FerretDB pushes an equality filter such as {"email": "a@b"} down to
-- PostgreSQL as `_jsonb -> 'email' @> '"a@b"'`. Its own indexes are btree
-- indexes on `(_jsonb -> 'email')`, which cannot serve `@>`, so every such
-- lookup read the whole table. A GIN index on the same expression with the
-- `jsonb_path_ops` operator class can, and then a lookup by a unique field
-- costs about as much as one by `_id`.
--
-- How: every FerretDB database is a PostgreSQL schema holding a table
-- `_ferretdb_database_metadata` with one row per collection:
--   {"_id": <collection>, "table": <table>, "indexes":
--     [{"name": "email_1", "pgindex": <index>, "key": {"email": 1}, "unique": true}, ...]}
-- FerretDB inserts that row when it creates a collection and updates it when it
-- creates or drops an index, in the same transaction as its own DDL. A row
-- trigger on every metadata table (attached by an event trigger when FerretDB
-- creates one) keeps, for every FerretDB index with top-level keys (`_id`
-- included), one GIN index `qgin_<md5 of the FerretDB index name and keys>` over those keys,
-- and drops the GIN indexes whose FerretDB index is gone. Dropping a collection
-- drops its table and so its GIN indexes; dropping a database drops its schema.
-- The GIN index is created in FerretDB's own transaction: it exists before the
-- index is visible to any client, so it is used from the first request. At
-- every start the engine also runs `quarry_gin_plan()`'s statements (below) in
-- the background, which brings back shadows that went missing.
--
-- Unique indexes and missing keys: FerretDB's unique index is a btree on
-- `(_jsonb -> 'key')`, where a document without the key gives SQL NULL, and NULLs
-- are distinct, so any number of documents could lack a unique key. MongoDB
-- counts a missing key as null: at most one document may lack it. For every
-- FerretDB unique index whose keys are all top-level (`_id` aside), a unique
-- index `qnul_<md5>` on `coalesce(_jsonb -> 'key', 'null')` keeps that rule; a
-- write it refuses is refused like any other duplicate. It is created and
-- dropped with the GIN shadows (in FerretDB's transaction, and by the catch-up).
--
-- This depends on FerretDB's internal layout (table and column names, the JSON
-- shape above). `quarry_check_layout` fails loudly when a row does not have that
-- shape, which makes FerretDB's own DDL fail instead of silently going slow; the
-- test suite checks the layout too (tests/app/test_engine_indexes.py).

-- Named after FerretDB's index, the keys covered and the index options, so that a
-- change of any (or of the rule below) replaces the GIN index at the next start.
CREATE OR REPLACE FUNCTION quarry_gin_name(pgindex text, keys text[]) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT 'qgin_' || left(md5(pgindex || ':' || array_to_string(keys, ',') || ':fastupdate=off'), 24)
$$;

-- The top-level keys of one FerretDB index (`_id` too: FerretDB finds by `_id`
-- with the same `@>` filter, which its btree `_id` index cannot serve either).
-- Dotted keys are left out: FerretDB's find does not push them down.
CREATE OR REPLACE FUNCTION quarry_gin_keys(index_doc jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(array_agg(k.key ORDER BY k.key), '{}')
    FROM jsonb_object_keys(index_doc -> 'key') AS k(key)
    WHERE position('.' IN k.key) = 0 AND left(k.key, 1) <> '$'
$$;

-- The CREATE INDEX of one shadow index (CONCURRENTLY: the start-up catch-up,
-- which runs beside traffic; plain: inside FerretDB's own DDL transaction).
-- fastupdate=off: with GIN's pending list, every lookup also scans the entries
-- not yet merged (after a bulk import, all of them); lookups are the point of
-- this index, so inserts pay the merge instead.
CREATE OR REPLACE FUNCTION quarry_gin_create(
    schema_name text, table_name text, gin_name text, keys text[], beside_traffic boolean
) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT format(
        'CREATE INDEX %s IF NOT EXISTS %I ON %I.%I USING gin (%s) WITH (fastupdate = off)',
        CASE WHEN beside_traffic THEN 'CONCURRENTLY' ELSE '' END,
        gin_name, schema_name, table_name,
        (SELECT string_agg(format('(_jsonb -> %L) jsonb_path_ops', k), ', ') FROM unnest(keys) AS k))
$$;

-- The missing-key unique index of one FerretDB unique index (NULL when there is
-- none: not unique, the `_id` index, or a dotted key, which MongoDB indexes through
-- arrays and this expression cannot).
CREATE OR REPLACE FUNCTION quarry_nul_name(index_doc jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN (index_doc ->> 'unique')::boolean IS NOT TRUE THEN NULL
        WHEN index_doc -> 'key' ? '_id' THEN NULL
        WHEN cardinality(quarry_gin_keys(index_doc))
             <> (SELECT count(*) FROM jsonb_object_keys(index_doc -> 'key')) THEN NULL
        ELSE 'qnul_' || left(md5((index_doc ->> 'pgindex') || ':'
                                 || array_to_string(quarry_gin_keys(index_doc), ',')), 24)
    END
$$;

CREATE OR REPLACE FUNCTION quarry_nul_create(
    schema_name text, table_name text, nul_name text, keys text[], beside_traffic boolean
) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT format(
        'CREATE UNIQUE INDEX %s IF NOT EXISTS %I ON %I.%I (%s)',
        CASE WHEN beside_traffic THEN 'CONCURRENTLY' ELSE '' END,
        nul_name, schema_name, table_name,
        (SELECT string_agg(format('(coalesce(_jsonb -> %L, ''null''::jsonb))', k), ', ')
         FROM unnest(keys) AS k))
$$;

CREATE OR REPLACE FUNCTION quarry_check_layout(schema_name text, meta jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    idx jsonb;
BEGIN
    IF jsonb_typeof(meta -> 'table') IS DISTINCT FROM 'string'
       OR jsonb_typeof(meta -> 'indexes') IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'quarry: FerretDB metadata in schema % has an unknown layout: %',
            schema_name, left(meta::text, 200)
            USING HINT = 'Quarry''s shadow GIN indexes depend on FerretDB 1.24''s layout';
    END IF;
    FOR idx IN SELECT * FROM jsonb_array_elements(meta -> 'indexes') LOOP
        IF jsonb_typeof(idx -> 'pgindex') IS DISTINCT FROM 'string'
           OR jsonb_typeof(idx -> 'key') IS DISTINCT FROM 'object' THEN
            RAISE EXCEPTION 'quarry: FerretDB index metadata in schema % has an unknown layout: %',
                schema_name, left(idx::text, 200)
                USING HINT = 'Quarry''s shadow GIN indexes depend on FerretDB 1.24''s layout';
        END IF;
    END LOOP;
END
$$;

-- Make the GIN indexes of one collection match its FerretDB indexes.
CREATE OR REPLACE FUNCTION quarry_sync_gin(schema_name text, meta jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    table_name text;
    idx jsonb;
    keys text[];
    wanted text[] := '{}';
    gin_name text;
    nul_name text;
    existing record;
    empty boolean := false;
BEGIN
    PERFORM quarry_check_layout(schema_name, meta);
    table_name := meta ->> 'table';
    IF to_regclass(format('%I.%I', schema_name, table_name)) IS NULL THEN
        RETURN;  -- the table comes with a later statement of the same transaction
    END IF;
    FOR idx IN SELECT * FROM jsonb_array_elements(meta -> 'indexes') LOOP
        keys := quarry_gin_keys(idx);
        CONTINUE WHEN cardinality(keys) = 0;
        gin_name := quarry_gin_name(idx ->> 'pgindex', keys);
        wanted := wanted || gin_name;
        EXECUTE quarry_gin_create(schema_name, table_name, gin_name, keys, false);
        nul_name := quarry_nul_name(idx);
        IF nul_name IS NOT NULL THEN
            wanted := wanted || nul_name;
            EXECUTE quarry_nul_create(schema_name, table_name, nul_name, keys, false);
        END IF;
    END LOOP;
    FOR existing IN
        SELECT i.indexname FROM pg_indexes i
        WHERE i.schemaname = schema_name AND i.tablename = table_name
          AND (i.indexname LIKE 'qgin\_%' OR i.indexname LIKE 'qnul\_%')
          AND NOT (i.indexname = ANY (wanted))
    LOOP
        EXECUTE format('DROP INDEX IF EXISTS %I.%I', schema_name, existing.indexname);
    END LOOP;
    -- An empty table (FerretDB records a new collection after creating its table,
    -- before any document) gets its row counter here, at no cost; a filled one at
    -- the engine's start (`quarry_gin_plan`) or from Quarry's typed-index builder,
    -- never inside FerretDB's DDL (a count there would hold the DDL up).
    IF quarry_count_token(to_regclass(format('%I.%I', schema_name, table_name))) IS NULL THEN
        EXECUTE format('SELECT NOT EXISTS (SELECT FROM %I.%I)', schema_name, table_name)
            INTO empty;
    END IF;
    IF empty THEN
        BEGIN
            PERFORM quarry_count_install(schema_name, table_name);
        EXCEPTION
            WHEN query_canceled THEN RAISE;
            WHEN OTHERS THEN  -- never FerretDB's DDL that fails for it: counted later
                RAISE WARNING 'quarry: no row counter on %.% yet: %', schema_name, table_name, SQLERRM;
        END;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION quarry_metadata_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
BEGIN
    PERFORM quarry_sync_gin(TG_TABLE_SCHEMA, NEW._jsonb);
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION quarry_watch_metadata_table(schema_name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format(
        'CREATE OR REPLACE TRIGGER quarry_gin_sync AFTER INSERT OR UPDATE ON %I._ferretdb_database_metadata '
        'FOR EACH ROW EXECUTE FUNCTION quarry_metadata_changed()', schema_name);
END
$$;

CREATE OR REPLACE FUNCTION quarry_table_created() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
DECLARE
    command record;
BEGIN
    FOR command IN SELECT * FROM pg_event_trigger_ddl_commands()
                   WHERE command_tag = 'CREATE TABLE' AND object_type = 'table' LOOP
        IF command.object_identity LIKE '%._ferretdb_database_metadata' THEN
            PERFORM quarry_watch_metadata_table(command.schema_name);
        END IF;
    END LOOP;
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'quarry_metadata_tables') THEN
        CREATE EVENT TRIGGER quarry_metadata_tables ON ddl_command_end
            WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION quarry_table_created();
    END IF;
END
$$;

-- Every existing metadata table gets its trigger (databases made before this
-- file was installed, or copied in).
DO $$
DECLARE
    meta_table record;
BEGIN
    FOR meta_table IN
        SELECT schemaname FROM pg_tables WHERE tablename = '_ferretdb_database_metadata'
    LOOP
        PERFORM quarry_watch_metadata_table(meta_table.schemaname);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION quarry_index_invalid(schema_name text, index_name text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM pg_index i
                   JOIN pg_class c ON c.oid = i.indexrelid
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = schema_name AND c.relname = index_name AND NOT i.indisvalid)
$$;

-- The catch-up the engine runs after start, beside traffic, one statement at a
-- time: CREATE INDEX CONCURRENTLY for every shadow index that is missing (or was
-- left invalid by an interrupted build, dropped first), DROP INDEX CONCURRENTLY
-- for every one whose FerretDB index is gone. A large collection's build thus
-- never holds up the start, nor blocks its writes.
CREATE OR REPLACE FUNCTION quarry_gin_plan() RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    meta_table record;
    meta jsonb;
    idx jsonb;
    keys text[];
    wanted text[];
    gin_name text;
    nul_name text;
    table_name text;
    existing record;
BEGIN
    FOR meta_table IN
        SELECT schemaname FROM pg_tables WHERE tablename = '_ferretdb_database_metadata'
    LOOP
        FOR meta IN EXECUTE format('SELECT _jsonb FROM %I._ferretdb_database_metadata',
                                   meta_table.schemaname) LOOP
            PERFORM quarry_check_layout(meta_table.schemaname, meta);
            table_name := meta ->> 'table';
            CONTINUE WHEN to_regclass(format('%I.%I', meta_table.schemaname, table_name)) IS NULL;
            wanted := '{}';
            FOR idx IN SELECT * FROM jsonb_array_elements(meta -> 'indexes') LOOP
                keys := quarry_gin_keys(idx);
                CONTINUE WHEN cardinality(keys) = 0;
                gin_name := quarry_gin_name(idx ->> 'pgindex', keys);
                wanted := wanted || gin_name;
                nul_name := quarry_nul_name(idx);
                IF nul_name IS NOT NULL THEN
                    wanted := wanted || nul_name;
                    IF quarry_index_invalid(meta_table.schemaname, nul_name) THEN
                        RETURN NEXT format('DROP INDEX CONCURRENTLY IF EXISTS %I.%I',
                                           meta_table.schemaname, nul_name);
                    END IF;
                    IF to_regclass(format('%I.%I', meta_table.schemaname, nul_name)) IS NULL
                       OR quarry_index_invalid(meta_table.schemaname, nul_name) THEN
                        RETURN NEXT quarry_nul_create(meta_table.schemaname, table_name, nul_name,
                                                      keys, true);
                    END IF;
                END IF;
                IF quarry_index_invalid(meta_table.schemaname, gin_name) THEN
                    RETURN NEXT format('DROP INDEX CONCURRENTLY IF EXISTS %I.%I',
                                       meta_table.schemaname, gin_name);
                ELSIF to_regclass(format('%I.%I', meta_table.schemaname, gin_name)) IS NOT NULL THEN
                    CONTINUE;
                END IF;
                RETURN NEXT quarry_gin_create(meta_table.schemaname, table_name, gin_name, keys, true);
            END LOOP;
            FOR existing IN
                SELECT i.indexname FROM pg_indexes i
                WHERE i.schemaname = meta_table.schemaname AND i.tablename = table_name
                  AND (i.indexname LIKE 'qgin\_%' OR i.indexname LIKE 'qnul\_%')
                  AND NOT (i.indexname = ANY (wanted))
            LOOP
                RETURN NEXT format('DROP INDEX CONCURRENTLY IF EXISTS %I.%I',
                                   meta_table.schemaname, existing.indexname);
            END LOOP;
            IF quarry_count_token(to_regclass(format('%I.%I', meta_table.schemaname,
                                                     table_name))) IS NULL THEN
                -- Named as the typed-index builder of that schema while it runs, so
                -- that FerretDB's DDL there cancels it rather than wait for its count.
                RETURN NEXT format(
                    'SELECT set_config(''application_name'', quarry_typed_index_builder(%L), false), '
                    'quarry_count_install(%L, %L), '
                    'set_config(''application_name'', ''quarry engine catch-up'', false)',
                    meta_table.schemaname, meta_table.schemaname, table_name);
            END IF;
        END LOOP;
    END LOOP;
END
$$;

-- FerretDB's DDL cancels Quarry's typed-index builds in its database
-- (app/engine/typed_indexes.py).
--
-- Why: the builder runs CREATE INDEX CONCURRENTLY, DROP INDEX CONCURRENTLY, COMMENT and
-- ANALYZE on FerretDB's tables beside traffic. Raced by FerretDB's own DDL on the same
-- tables, PostgreSQL cancels one side ("deadlock detected" beside createIndexes,
-- "tuple concurrently updated" beside dropDatabase and drop), and a cancelled FerretDB
-- command is a failed request. Nor may FerretDB's DDL wait for a build: FerretDB holds
-- its global metadata lock meanwhile, which stops every other request. So before
-- FerretDB drops a schema or a table or creates or drops an index, the builds in that
-- schema are cancelled (the builder tries again later) and the statement goes on once
-- they have stopped (a few milliseconds; at most 2 s). The trigger functions fix their
-- search_path: a restore (pg_restore) runs with an empty one. The builder names its
-- session after the schema it works on (`application_name`, with an md5 of the name: names are longer than it
-- takes); FerretDB names every object `"schema"."object"`, so the schema is the first
-- quoted name followed by a dot (for DROP SCHEMA, the only one).
CREATE OR REPLACE FUNCTION quarry_typed_index_builder(schema_name text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT 'quarry typed indexes ' || left(md5(schema_name), 20)
$$;

CREATE OR REPLACE FUNCTION quarry_ddl_cancels_typed_index_builds() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
DECLARE
    target text;
    builder text;
    waited int := 0;
BEGIN
    IF current_setting('application_name') LIKE 'quarry typed indexes %' THEN
        RETURN;  -- the builder's own statements
    END IF;
    target := substring(current_query() FROM '"((?:[^"]|"")+)"\.');
    IF target IS NULL AND tg_tag = 'DROP SCHEMA' THEN
        target := substring(current_query() FROM '"((?:[^"]|"")+)"');
    END IF;
    IF target IS NULL THEN
        RETURN;
    END IF;
    builder := quarry_typed_index_builder(replace(target, '""', '"'));
    -- Cancelled again while it is busy: a statement it starts after the first cancel
    -- (its clean-up, its next try) must not hold this one up either.
    LOOP
        -- pg_stat_activity is read once per transaction unless its snapshot is cleared.
        PERFORM pg_stat_clear_snapshot();
        PERFORM pg_cancel_backend(pid) FROM pg_stat_activity
        WHERE application_name = builder AND state = 'active' AND pid <> pg_backend_pid();
        EXIT WHEN NOT FOUND OR waited >= 200;
        PERFORM pg_sleep(0.01);
        waited := waited + 1;
    END LOOP;
EXCEPTION
    -- Making way is a courtesy: it never fails the statement it runs for (a
    -- restore's, an administrator's, FerretDB's).
    WHEN query_canceled THEN RAISE;
    WHEN OTHERS THEN
        RAISE WARNING 'quarry: typed-index builds not cancelled: %', SQLERRM;
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'quarry_typed_index_ddl') THEN
        CREATE EVENT TRIGGER quarry_typed_index_ddl ON ddl_command_start
            WHEN TAG IN ('DROP SCHEMA', 'DROP TABLE', 'CREATE INDEX', 'DROP INDEX')
            EXECUTE FUNCTION quarry_ddl_cancels_typed_index_builds();
    END IF;
END
$$;

-- Row counters: the exact number of documents of every FerretDB table without
-- reading the table.
--
-- Why: an unfiltered page's total (and a collection's count) is `count(*)`, which
-- reads the whole table: 9 ms at 100,000 documents, 50-60 ms at 1,000,000, so a
-- page's cost grew with the collection, not the page. A statement-level trigger
-- on each table adds the rows each INSERT (COPY too) added and subtracts those
-- each DELETE removed, in the writer's own transaction, to a counter row: a
-- reader sums the counter rows in the same snapshot as its other reads, and gets
-- exactly what `count(*)` would.
--
-- How: one counter row per table and writing backend (`slot` = the backend's
-- pid), so that concurrent writers never wait for one another's counter row (a
-- shared row would make every writer of a table wait for the last one's commit,
-- and could close a deadlock with their other locks); slot 0 holds the count at
-- installation and what compaction (`quarry_count_compact`, run by the engine
-- every few minutes) folds into it, skipping rows a writer holds. The table's
-- triggers are named after a random token that keys its counter rows
-- (`qcount_i_<token>`, `qcount_d_<token>`, `qcount_t_<token>`): the token
-- travels with the table through a rename and through pg_dump/pg_restore (which
-- restores the counter rows of the same snapshot and creates the triggers after
-- loading the data), and a table without the triggers has no count — readers
-- then count the table. A new table gets its triggers in FerretDB's own creating
-- transaction, an existing one at the engine's start or when Quarry's builder
-- declares its typed indexes (`quarry_count_install`: under a SHARE ROW EXCLUSIVE
-- lock, which holds writes back for one `count(*)`). Counter rows of dropped
-- tables are removed by compaction.
CREATE TABLE IF NOT EXISTS public.quarry_row_counts (
    token text NOT NULL,
    slot int4 NOT NULL,
    n int8 NOT NULL,
    PRIMARY KEY (token, slot)
);

CREATE OR REPLACE FUNCTION quarry_count_token(relation regclass) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, public AS $$
    SELECT substr(t.tgname, 10) FROM pg_trigger t
    WHERE t.tgrelid = relation AND t.tgname LIKE 'qcount\_i\_%'
$$;

CREATE OR REPLACE FUNCTION quarry_count_inserted() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
DECLARE
    delta int8;
BEGIN
    SELECT count(*) INTO delta FROM quarry_new_rows;
    IF delta <> 0 THEN
        INSERT INTO public.quarry_row_counts AS c (token, slot, n)
        VALUES (TG_ARGV[0], pg_backend_pid(), delta)
        ON CONFLICT (token, slot) DO UPDATE SET n = c.n + EXCLUDED.n;
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION quarry_count_deleted() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
DECLARE
    delta int8;
BEGIN
    SELECT count(*) INTO delta FROM quarry_old_rows;
    IF delta <> 0 THEN
        INSERT INTO public.quarry_row_counts AS c (token, slot, n)
        VALUES (TG_ARGV[0], pg_backend_pid(), -delta)
        ON CONFLICT (token, slot) DO UPDATE SET n = c.n + EXCLUDED.n;
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION quarry_count_truncated() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
BEGIN
    DELETE FROM public.quarry_row_counts WHERE token = TG_ARGV[0] AND slot <> 0;
    UPDATE public.quarry_row_counts SET n = 0 WHERE token = TG_ARGV[0] AND slot = 0;
    RETURN NULL;
END
$$;

-- The counter of one table, unless it has one; true when installed here.
CREATE OR REPLACE FUNCTION quarry_count_install(schema_name text, table_name text) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, public SET lock_timeout = '1s' AS $$
DECLARE
    relation regclass;
    token text;
    counted int8;
BEGIN
    relation := to_regclass(format('%I.%I', schema_name, table_name));
    IF relation IS NULL OR quarry_count_token(relation) IS NOT NULL THEN
        RETURN false;
    END IF;
    -- No write in flight or to come until the triggers are in place and counted.
    EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', relation);
    IF quarry_count_token(relation) IS NOT NULL THEN
        RETURN false;  -- installed meanwhile
    END IF;
    token := left(replace(gen_random_uuid()::text, '-', ''), 24);
    EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %s REFERENCING NEW TABLE AS quarry_new_rows '
                   'FOR EACH STATEMENT EXECUTE FUNCTION quarry_count_inserted(%L)',
                   'qcount_i_' || token, relation, token);
    EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %s REFERENCING OLD TABLE AS quarry_old_rows '
                   'FOR EACH STATEMENT EXECUTE FUNCTION quarry_count_deleted(%L)',
                   'qcount_d_' || token, relation, token);
    EXECUTE format('CREATE TRIGGER %I AFTER TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION quarry_count_truncated(%L)',
                   'qcount_t_' || token, relation, token);
    EXECUTE format('SELECT count(*) FROM %s', relation) INTO counted;
    INSERT INTO public.quarry_row_counts (token, slot, n) VALUES (token, 0, counted);
    RETURN true;
END
$$;

-- Folds each table's writer rows into its slot 0 (those a writer holds now wait
-- for the next round) and removes the rows of tables that are gone. One
-- transaction per table (a procedure: `CALL quarry_count_compact()`), so that a
-- writer never waits for more than one table's fold; slot 0 is taken first and
-- without waiting, then the writer rows without waiting, so it never waits for
-- anyone (a TRUNCATE's trigger, which takes them the other way round, included).
-- (No `SET search_path` clause: a procedure with one cannot commit. Every name is
-- qualified or pg_catalog's, which is searched first whatever the path.)
CREATE OR REPLACE PROCEDURE quarry_count_compact()
LANGUAGE plpgsql AS $$
DECLARE
    target text;
    targets text[];
BEGIN
    DELETE FROM public.quarry_row_counts
    WHERE token NOT IN (SELECT substr(t.tgname, 10) FROM pg_catalog.pg_trigger t
                        WHERE t.tgname LIKE 'qcount\_i\_%');
    COMMIT;
    SELECT coalesce(array_agg(DISTINCT token), '{}') INTO targets
    FROM public.quarry_row_counts WHERE slot <> 0;
    FOREACH target IN ARRAY targets LOOP
        PERFORM 1 FROM public.quarry_row_counts
        WHERE token = target AND slot = 0 FOR UPDATE SKIP LOCKED;
        IF FOUND THEN  -- a table without slot 0 has no count to fold into: left as is
            WITH taken AS (
                SELECT slot FROM public.quarry_row_counts
                WHERE token = target AND slot <> 0 FOR UPDATE SKIP LOCKED
            ), moved AS (
                DELETE FROM public.quarry_row_counts c USING taken
                WHERE c.token = target AND c.slot = taken.slot RETURNING c.n
            )
            UPDATE public.quarry_row_counts
            SET n = n + (SELECT coalesce(sum(moved.n), 0) FROM moved)
            WHERE token = target AND slot = 0;
        END IF;
        COMMIT;
    END LOOP;
END
$$;

-- The number of rows of one table from its counter, in the caller's snapshot, or
-- NULL when it has none (count it).
CREATE OR REPLACE FUNCTION quarry_count_of(schema_name text, table_name text) RETURNS int8
LANGUAGE sql STABLE SET search_path = pg_catalog, public AS $$
    -- Without its slot 0 (a dump restored without this table's rows, say) the rows
    -- are no count: NULL, and the table is counted.
    SELECT CASE WHEN bool_or(c.slot = 0) THEN sum(c.n)::int8 END
    FROM public.quarry_row_counts c
    WHERE c.token = quarry_count_token(to_regclass(format('%I.%I', schema_name, table_name)))
$$;
