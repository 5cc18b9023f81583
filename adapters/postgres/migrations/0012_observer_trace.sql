-- Observer jobs continue the trace of the request whose transaction
-- committed their event (docs/tracing.md). The core records the
-- request's W3C traceparent in the transaction-local setting
-- fraise.traceparent (postgres.DB.InTenant); the outbox column's default
-- reads it, so the capture triggers, which name their columns, store it
-- without a change. A value that is not a version-00 traceparent is
-- dropped rather than refused: tracing never fails a write.
ALTER TABLE fraise.observer_outbox ADD COLUMN traceparent text
    DEFAULT CASE WHEN current_setting('fraise.traceparent', true) ~ '^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$'
                 THEN current_setting('fraise.traceparent', true) END;

-- observer_read returns the events with their trace context.
DROP FUNCTION fraise.observer_read(xid8, bigint, int);
CREATE FUNCTION fraise.observer_read(after_xid xid8, after_id bigint, lim int)
RETURNS TABLE (xid xid8, id bigint, tenant_id uuid, table_name text, op text, key jsonb,
               before jsonb, after jsonb, changed text[], tx_time timestamptz, traceparent text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT o.xid, o.id, o.tenant_id, o.table_name, o.op, o.key, o.before, o.after, o.changed, o.tx_time, o.traceparent
    FROM fraise.observer_outbox o
    WHERE (o.xid, o.id) > (after_xid, after_id)
      AND o.xid < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY o.xid, o.id
    LIMIT lim
$$;
-- Granted again to the core's role by fraise.grant_observers after migrating.
REVOKE ALL ON FUNCTION fraise.observer_read(xid8, bigint, int) FROM PUBLIC;
