-- Observer outbox generations: a restore cannot make two events one.
--
-- An outbox position is (xid, id): the writing transaction's id and a
-- sequence number. A database restored to a point in time, or a replica
-- promoted after an asynchronous failover, has lost the transactions after
-- that point, and it hands their transaction ids and sequence numbers out
-- again. Redis, which lives on, still holds the lost events' jobs and each
-- tenant's enqueue marker (the last position it took), and the receivers
-- have seen the lost events' idempotency keys, which are derived from the
-- position. So, without more, the events written after a restore are
-- skipped as already enqueued, or delivered under a key a receiver
-- deduplicates away.
--
-- A generation is a stretch of the outbox written by one incarnation of the
-- database (its system identifier and timeline). When the observers find
-- the database's incarnation is not the one the current generation was
-- started on, they start a new generation (core/observe Reconciler): its
-- rows are the outbox ids from first_id on, its positions come after every
-- position of earlier generations, and its idempotency keys name it. Then
-- they remove from Redis the jobs of events the restore lost
-- (observer_survived) and record the generation reconciled.
CREATE TABLE fraise.observer_generations (
    generation        int         PRIMARY KEY CHECK (generation >= 0),
    -- The outbox rows with id >= first_id (and below the next generation's
    -- first_id) are this generation's.
    first_id          bigint      NOT NULL,
    -- The incarnation the generation was started on.
    system_identifier text        NOT NULL,
    timeline          int         NOT NULL,
    started_at        timestamptz NOT NULL DEFAULT now(),
    -- Set once the jobs of the changes the new incarnation lost are out of
    -- the queue; the workers wait until then.
    reconciled_at     timestamptz
);

-- observer_incarnation returns the database's system identifier and the
-- timeline it writes on now (a restore or a promotion starts a new one).
CREATE FUNCTION fraise.observer_incarnation(OUT system_identifier text, OUT timeline int)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT (pg_control_system()).system_identifier::text,
           ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
$$;

-- Generation 0 is everything written so far, on this incarnation.
INSERT INTO fraise.observer_generations (generation, first_id, system_identifier, timeline, reconciled_at)
SELECT 0, 0, i.system_identifier, i.timeline, now() FROM fraise.observer_incarnation() i;

ALTER TABLE fraise.observer_cursors ADD COLUMN generation int NOT NULL DEFAULT 0;

-- observer_read returns up to lim events after position (after_gen,
-- after_xid, after_id), in (generation, xid, id) order: an earlier
-- generation's rows first (all of them committed or rolled back, since a
-- generation starts only once no transaction writes to the outbox), then
-- the current generation's, only of transactions older than every running
-- one, as before; each with its trace context (0012).
DROP FUNCTION fraise.observer_read(xid8, bigint, int);
CREATE FUNCTION fraise.observer_read(after_gen int, after_xid xid8, after_id bigint, lim int)
RETURNS TABLE (generation int, xid xid8, id bigint, tenant_id uuid, table_name text, op text, key jsonb,
               before jsonb, after jsonb, changed text[], tx_time timestamptz, traceparent text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    g      record;
    from_x xid8;
    from_i bigint;
BEGIN
    FOR g IN SELECT s.generation, s.first_id, lead(s.first_id) OVER (ORDER BY s.generation) AS next_id
             FROM fraise.observer_generations s WHERE s.generation >= after_gen ORDER BY s.generation LOOP
        IF g.generation = after_gen THEN
            from_x := after_xid; from_i := after_id;
        ELSE
            from_x := '0'; from_i := -1;
        END IF;
        IF g.next_id IS NULL THEN
            RETURN QUERY
            SELECT g.generation, o.xid, o.id, o.tenant_id, o.table_name, o.op, o.key, o.before, o.after, o.changed, o.tx_time, o.traceparent
            FROM fraise.observer_outbox o
            WHERE (o.xid, o.id) > (from_x, from_i) AND o.id >= g.first_id
              AND o.xid < pg_snapshot_xmin(pg_current_snapshot())
            ORDER BY o.xid, o.id
            LIMIT lim;
        ELSE
            RETURN QUERY
            SELECT g.generation, o.xid, o.id, o.tenant_id, o.table_name, o.op, o.key, o.before, o.after, o.changed, o.tx_time, o.traceparent
            FROM fraise.observer_outbox o
            WHERE (o.xid, o.id) > (from_x, from_i) AND o.id >= g.first_id AND o.id < g.next_id
            ORDER BY o.xid, o.id
            LIMIT lim;
        END IF;
        IF FOUND THEN
            RETURN;
        END IF;
    END LOOP;
END $$;

-- observer_advance moves dispatcher name's cursor to (p_gen, p_xid, p_id),
-- never backwards; with prune, it also deletes the outbox rows every cursor
-- has passed.
DROP FUNCTION fraise.observer_advance(text, xid8, bigint, boolean);
CREATE FUNCTION fraise.observer_advance(p_name text, p_gen int, p_xid xid8, p_id bigint, prune boolean)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    low_gen  int;
    low_xid  xid8;
    low_id   bigint;
    low_from bigint;
    low_to   bigint;
BEGIN
    INSERT INTO fraise.observer_cursors AS c (name, generation, xid, id) VALUES (p_name, p_gen, p_xid, p_id)
    ON CONFLICT (name) DO UPDATE SET generation = excluded.generation, xid = excluded.xid, id = excluded.id, updated_at = now()
    WHERE (c.generation, c.xid, c.id) < (excluded.generation, excluded.xid, excluded.id);
    IF prune THEN
        SELECT c.generation, c.xid, c.id INTO low_gen, low_xid, low_id
        FROM fraise.observer_cursors c ORDER BY c.generation, c.xid, c.id LIMIT 1;
        SELECT s.first_id, (SELECT min(n.first_id) FROM fraise.observer_generations n WHERE n.generation > s.generation)
        INTO low_from, low_to
        FROM fraise.observer_generations s WHERE s.generation = low_gen;
        IF low_from IS NULL THEN
            RETURN;
        END IF;
        -- Earlier generations are wholly behind every cursor.
        IF low_from > 0 THEN
            DELETE FROM fraise.observer_outbox o WHERE o.id < low_from;
        END IF;
        DELETE FROM fraise.observer_outbox o
        WHERE (o.xid, o.id) <= (low_xid, low_id) AND o.id >= low_from AND (low_to IS NULL OR o.id < low_to);
    END IF;
END $$;

-- observer_position returns dispatcher name's cursor and how many events
-- wait behind it (for metrics and the CLI).
DROP FUNCTION fraise.observer_position(text);
CREATE FUNCTION fraise.observer_position(p_name text, OUT generation int, OUT xid xid8, OUT id bigint, OUT pending bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    g_from bigint;
    g_to   bigint;
BEGIN
    SELECT coalesce(c.generation, 0), coalesce(c.xid, '0'), coalesce(c.id, 0) INTO generation, xid, id
    FROM (SELECT 1) one LEFT JOIN fraise.observer_cursors c ON c.name = p_name;
    SELECT s.first_id, (SELECT min(n.first_id) FROM fraise.observer_generations n WHERE n.generation > s.generation)
    INTO g_from, g_to
    FROM fraise.observer_generations s WHERE s.generation = observer_position.generation;
    SELECT count(*) INTO pending FROM fraise.observer_outbox o
    WHERE (g_to IS NOT NULL AND o.id >= g_to)
       OR ((o.xid, o.id) > (observer_position.xid, observer_position.id)
           AND o.id >= coalesce(g_from, 0) AND (g_to IS NULL OR o.id < g_to));
END $$;

-- observer_generation describes the current generation: its number, the
-- one before it (NULL for none), whether the database is still the
-- incarnation it was started on, whether its reconciliation finished, and
-- the database's incarnation now.
CREATE FUNCTION fraise.observer_generation(OUT generation int, OUT previous int, OUT current boolean,
    OUT reconciled boolean, OUT system_identifier text, OUT timeline int)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT g.generation,
           (SELECT max(p.generation) FROM fraise.observer_generations p WHERE p.generation < g.generation),
           g.system_identifier = i.system_identifier AND g.timeline = i.timeline,
           g.reconciled_at IS NOT NULL, i.system_identifier, i.timeline
    FROM fraise.observer_incarnation() i,
         (SELECT * FROM fraise.observer_generations ORDER BY generation DESC LIMIT 1) g
$$;

-- observer_start_generation starts a new generation, numbered above both
-- the current one and at_least (the highest generation the job queue has
-- seen: a database restored to before an earlier restore must not reuse
-- that restore's numbers), unless the current generation was started on
-- the database's present incarnation (another process got there first).
-- It waits for every transaction that wrote to the outbox to end and keeps
-- new ones out until it commits, so that no row of the old generation
-- appears once the new one has begun.
--
-- The new generation begins with the first row the new incarnation wrote,
-- which may be before this runs: the database serves writes from its
-- promotion on, before any observer is back. Those rows reuse the lost
-- transactions' ids and positions, so they must not be left to the old
-- generation. Every row the new incarnation wrote has an outbox id above
-- every row it inherited (the sequence was restored with them) and a
-- tx_time after its promotion; every inherited row's tx_time is before it.
-- The promotion time is the modification time of the timeline's history
-- file, which promotion writes (readable when the function's owner may
-- read server files), else the last replayed commit's time (known until
-- the server restarts); without either, the generation begins at the
-- sequence's next value.
CREATE FUNCTION fraise.observer_start_generation(at_least int)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cur      record;
    inc      record;
    seq      text := pg_get_serial_sequence('fraise.observer_outbox', 'id');
    last     bigint;
    calld    boolean;
    first    bigint;
    promoted timestamptz;
    written  bigint;
BEGIN
    LOCK TABLE fraise.observer_generations IN EXCLUSIVE MODE;
    SELECT * INTO cur FROM fraise.observer_generations ORDER BY generation DESC LIMIT 1;
    SELECT * INTO inc FROM fraise.observer_incarnation();
    IF cur.system_identifier = inc.system_identifier AND cur.timeline = inc.timeline THEN
        RETURN;
    END IF;
    LOCK TABLE fraise.observer_outbox IN EXCLUSIVE MODE;
    EXECUTE format('SELECT last_value, is_called FROM %s', seq) INTO last, calld;
    first := CASE WHEN calld THEN last + 1 ELSE last END;
    BEGIN
        SELECT (pg_stat_file('pg_wal/' || lpad(upper(to_hex(inc.timeline)), 8, '0') || '.history', true)).modification
        INTO promoted;
    EXCEPTION WHEN insufficient_privilege THEN
        promoted := NULL;
    END;
    promoted := coalesce(promoted, pg_last_xact_replay_timestamp());
    IF promoted IS NOT NULL THEN
        SELECT min(o.id) INTO written FROM fraise.observer_outbox o WHERE o.tx_time > promoted;
        first := least(first, written);
    END IF;
    INSERT INTO fraise.observer_generations (generation, first_id, system_identifier, timeline)
    VALUES (greatest(cur.generation, at_least) + 1, first, inc.system_identifier, inc.timeline);
END $$;

-- observer_survived says, for each event position (generation, xid, id)
-- and transaction time, whether its change is part of the database's
-- history: of the current generation, yes; of the generation before it
-- (the one a restore cut short), when a cursor has passed it (a cursor
-- passes only committed events) or its row is in the outbox with the same
-- transaction time (a transaction after the restore may have reused its
-- position); of an older generation, yes; of any other (a generation this
-- database never had), no.
CREATE FUNCTION fraise.observer_survived(gens int[], xids xid8[], ids bigint[], tx_times timestamptz[])
RETURNS boolean[]
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cur     int;
    prev    int;
    c_gen   int;
    c_xid   xid8;
    c_id    bigint;
    res     boolean[];
BEGIN
    SELECT max(s.generation) INTO cur FROM fraise.observer_generations s;
    SELECT max(s.generation) INTO prev FROM fraise.observer_generations s WHERE s.generation < cur;
    SELECT c.generation, c.xid, c.id INTO c_gen, c_xid, c_id
    FROM fraise.observer_cursors c ORDER BY c.generation, c.xid, c.id LIMIT 1;
    SELECT array_agg(CASE
            WHEN e.g = cur THEN true
            WHEN e.g = prev THEN
                (c_gen IS NOT NULL AND (e.g, e.x, e.i) <= (c_gen, c_xid, c_id))
                OR EXISTS (SELECT 1 FROM fraise.observer_outbox o WHERE o.xid = e.x AND o.id = e.i AND o.tx_time = e.t)
            WHEN e.g < prev THEN true
            ELSE false
        END ORDER BY e.n)
    INTO res
    FROM unnest(gens, xids, ids, tx_times) WITH ORDINALITY AS e(g, x, i, t, n);
    RETURN coalesce(res, '{}');
END $$;

-- observer_reconciled records generation g reconciled.
CREATE FUNCTION fraise.observer_reconciled(g int) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    UPDATE fraise.observer_generations SET reconciled_at = now() WHERE generation = g AND reconciled_at IS NULL
$$;

REVOKE ALL ON FUNCTION fraise.observer_incarnation(), fraise.observer_read(int, xid8, bigint, int),
    fraise.observer_advance(text, int, xid8, bigint, boolean), fraise.observer_position(text),
    fraise.observer_generation(), fraise.observer_start_generation(int),
    fraise.observer_survived(int[], xid8[], bigint[], timestamptz[]), fraise.observer_reconciled(int) FROM PUBLIC;

-- grant_observers gives the core's role what observers need, now with the
-- generations' functions; Migrate calls it after migrating.
CREATE OR REPLACE FUNCTION fraise.grant_observers(role name) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON fraise.observer_rules TO %I', role);
    EXECUTE format('GRANT SELECT ON public.v_observer_rule TO %I', role);
    EXECUTE format('GRANT EXECUTE ON FUNCTION fraise.observer_read(int, xid8, bigint, int), '
                   'fraise.observer_advance(text, int, xid8, bigint, boolean), fraise.observer_position(text), '
                   'fraise.observer_rules_enabled(), fraise.observer_generation(), '
                   'fraise.observer_start_generation(int), '
                   'fraise.observer_survived(int[], xid8[], bigint[], timestamptz[]), '
                   'fraise.observer_reconciled(int) TO %I', role);
END $$;
