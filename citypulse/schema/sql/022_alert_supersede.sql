-- analytics: an alert resolved because a higher alert for the same incident took it over
-- (rules.yaml `supersedes:`) is audited with action 'supersede'.
ALTER TABLE citypulse.alert_events DROP CONSTRAINT IF EXISTS alert_events_action_check;
ALTER TABLE citypulse.alert_events ADD CONSTRAINT alert_events_action_check
    CHECK (action IN ('open', 'acknowledge', 'escalate', 'resolve', 'auto_resolve',
                      'regroup', 'supersede', 'note'));
