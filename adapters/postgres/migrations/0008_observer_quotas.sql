-- Observer rules count against the tenant's tier quotas (0005): how many
-- rules a tenant keeps, and how many actions one rule runs. Both refusals
-- raise SQLSTATE FQ001, which the core reports as QUOTA_EXCEEDED; the
-- counting trigger locks the tenant's usage row, so concurrent creates
-- cannot pass the limit together.
SELECT fraise.track_quota('observer_rules', 'fraise.observer_rules');

CREATE OR REPLACE FUNCTION fraise.check_rule_actions() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, fraise AS $$
BEGIN
    PERFORM fraise.check_quota('actions_per_rule', jsonb_array_length(coalesce(NEW.actions, '[]'::jsonb)));
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS fraise_quota_actions_per_rule ON fraise.observer_rules;
CREATE TRIGGER fraise_quota_actions_per_rule BEFORE INSERT OR UPDATE OF actions ON fraise.observer_rules
FOR EACH ROW EXECUTE FUNCTION fraise.check_rule_actions();
