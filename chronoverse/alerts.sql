-- Queries of chronoverse/alerts.py: notifications, health flips and the webhook outbox, written in
-- the transaction of the change that raised them. Each takes arrays (one statement per batch).

-- name: insert_notifications
-- One event gives one notification: a second write of the same dedup key is a no-op. The
-- clock, not the transaction's start, dates them: the ones one change raises list in order.
INSERT INTO notifications (user_id, kind, event, title, message, entity_type, entity_id,
                           action_url, dedup_key, created_at)
SELECT *, clock_timestamp()
FROM unnest(%(user_ids)b::uuid[], %(kinds)b::text[], %(events)b::text[], %(titles)b::text[],
            %(messages)b::text[], %(entity_types)b::text[], %(entity_ids)b::uuid[],
            %(action_urls)b::text[], %(dedup_keys)b::text[])
ON CONFLICT (user_id, dedup_key) DO NOTHING

-- name: set_health
-- The caller holds the workflows' row locks and read their health under them.
UPDATE workflows AS w SET health = t.health
FROM unnest(%(ids)b::uuid[], %(healths)b::text[]) AS t(id, health)
WHERE w.id = t.id AND w.health <> t.health

-- name: enqueue_webhook_deliveries
-- One delivery per (endpoint, event): every endpoint of the owner for all its workflows or for
-- this one that subscribes to the event. A second write of the same event is a no-op.
INSERT INTO webhook_deliveries (webhook_id, event, payload, dedup_key)
SELECT h.id, t.event, t.payload::jsonb, t.dedup_key
FROM unnest(%(user_ids)b::uuid[], %(workflow_ids)b::uuid[], %(events)b::text[],
            %(payloads)b::text[], %(dedup_keys)b::text[])
    AS t(user_id, workflow_id, event, payload, dedup_key)
JOIN webhooks AS h
  ON h.user_id = t.user_id
 AND (h.workflow_id IS NULL OR h.workflow_id = t.workflow_id)
 AND t.event = ANY(h.events)
ON CONFLICT (webhook_id, dedup_key) DO NOTHING
