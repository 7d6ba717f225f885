-- Phase 2's state in PostgreSQL. Every table is named spine_phase2_*: phase 1's
-- rollback refuses while any exists, and phase 2's rollback drops them all.
--
-- One row per Celery task the side-car knows a route for. A change is
-- announced on the channel spine_phase2_routes (the task name as payload) in
-- the transaction that makes it; side-cars also re-read the table every few
-- seconds, so a missed notification only delays a change.
CREATE TABLE IF NOT EXISTS spine_phase2_routes (
    task       TEXT        PRIMARY KEY,
    mode       TEXT        NOT NULL CHECK (mode IN ('passthrough', 'shadow', 'reroute')),
    percent    SMALLINT    NOT NULL CHECK (percent BETWEEN 0 AND 100),
    queue      TEXT        NOT NULL CHECK (queue <> ''),
    pipeline   TEXT        NOT NULL CHECK (pipeline <> ''),
    lane       TEXT        NOT NULL CHECK (lane <> ''),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_by TEXT        NOT NULL DEFAULT current_user
);
