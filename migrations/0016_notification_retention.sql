-- Retention of what users are told: notifications and finished webhook deliveries are deleted by
-- age (services/scheduling_worker/retention.py), oldest first, in bounded batches.
CREATE INDEX notifications_created_idx ON notifications (created_at);
CREATE INDEX webhook_deliveries_finished_idx ON webhook_deliveries (created_at)
    WHERE status <> 'PENDING';

-- What the default ALERTS preference shows (chronoverse.alerts.ALERTS_KINDS and ALERTS_EVENTS),
-- spelled out exactly as the list_alert_* and mark_alert_* queries of
-- services/server/store/queries.sql do, so that the planner matches them. Most stored rows are
-- SUCCESS and INFO that ALERTS hides; without these, a page or the unread badge walks past them.
CREATE INDEX notifications_alerts_idx ON notifications (user_id, created_at DESC, id DESC)
    WHERE kind IN ('ALERT', 'ERROR', 'WARN') OR event = 'workflow.recovered';
CREATE INDEX notifications_alerts_unread_idx ON notifications (user_id, created_at DESC, id DESC)
    WHERE read_at IS NULL AND (kind IN ('ALERT', 'ERROR', 'WARN') OR event = 'workflow.recovered');
