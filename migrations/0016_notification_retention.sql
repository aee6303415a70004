-- Retention of what users are told: notifications and finished webhook deliveries are deleted by
-- age (services/scheduling_worker/retention.py), oldest first, in bounded batches.
CREATE INDEX notifications_created_idx ON notifications (created_at);
CREATE INDEX webhook_deliveries_finished_idx ON webhook_deliveries (created_at)
    WHERE status <> 'PENDING';
