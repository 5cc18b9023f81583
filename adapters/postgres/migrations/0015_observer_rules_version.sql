-- The observer rules' version: a counter moved in the transaction of every
-- change to fraise.observer_rules. The dispatcher reads it after each batch
-- of events and reloads its rules when it moved, so an event matches every
-- rule committed before it: the notification that rules changed travels on
-- another connection and may arrive after the events of later changes.

CREATE TABLE fraise.observer_rules_version (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    version bigint NOT NULL
);
INSERT INTO fraise.observer_rules_version (version) VALUES (0);

-- SECURITY DEFINER: the core's role changes rules but may not write the
-- counter itself. The row lock orders concurrent rule changes, which are
-- rare; the counter only ever moves forward.
CREATE OR REPLACE FUNCTION fraise.observer_rules_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE fraise.observer_rules_version SET version = version + 1;
    PERFORM pg_notify('fraise_observer_rules', '');
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION fraise.observer_rules_changed() FROM PUBLIC;

CREATE FUNCTION fraise.observer_rules_version() RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT version FROM fraise.observer_rules_version
$$;
REVOKE ALL ON FUNCTION fraise.observer_rules_version() FROM PUBLIC;

-- grant_observer_rules_version lets the core's role read the version.
CREATE FUNCTION fraise.grant_observer_rules_version(role name) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('GRANT EXECUTE ON FUNCTION fraise.observer_rules_version() TO %I', role);
END $$;
