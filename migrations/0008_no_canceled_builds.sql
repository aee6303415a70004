-- CANCELED was never set by anything: the build statuses are QUEUED, STARTED, COMPLETED, FAILED.
UPDATE workflows SET build_status = 'FAILED', build_error = 'build canceled'
WHERE build_status = 'CANCELED';
ALTER TABLE workflows DROP CONSTRAINT workflows_build_status_check;
ALTER TABLE workflows ADD CONSTRAINT workflows_build_status_check
    CHECK (build_status IN ('QUEUED', 'STARTED', 'COMPLETED', 'FAILED'));
