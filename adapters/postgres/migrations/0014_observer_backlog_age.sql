-- The observer backlog's age, for the metrics and alerts (docs/metrics.md):
-- how many events wait says little without how long the oldest has.

-- observer_oldest_pending returns when the first event behind dispatcher
-- name's cursor was written (its transaction's start), NULL when none
-- waits.
CREATE FUNCTION fraise.observer_oldest_pending(p_name text) RETURNS timestamptz
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT o.tx_time FROM fraise.observer_outbox o
    WHERE (o.xid, o.id) > (SELECT coalesce(c.xid, '0'::xid8), coalesce(c.id, 0::bigint)
                           FROM (SELECT 1) one LEFT JOIN fraise.observer_cursors c ON c.name = p_name)
    ORDER BY o.xid, o.id
    LIMIT 1
$$;
REVOKE ALL ON FUNCTION fraise.observer_oldest_pending(text) FROM PUBLIC;

-- grant_observer_backlog lets the core's role read the backlog's age.
CREATE FUNCTION fraise.grant_observer_backlog(role name) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('GRANT EXECUTE ON FUNCTION fraise.observer_oldest_pending(text) TO %I', role);
END $$;
