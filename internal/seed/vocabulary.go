package seed

// The value sets the seeder draws from. They are exactly the values the schema
// fixture documents, in that order; tests iterate them to prove coverage. Treat them
// as read-only.
var (
	// ExecutionStatuses are the values of executions.status.
	ExecutionStatuses = []string{"pending", "queued", "running", "completed", "failed", "cancelled", "dead_lettered"}
	// Lanes are the values of executions.lane.
	Lanes = []string{"normal", "backfill", "slow", "realtime", "high", "low"}
	// TriggerSources are the values of executions.trigger_source.
	TriggerSources = []string{"api", "cli", "schedule", "webhook", "retry", "internal"}
	// JobTypes are the values of jobs.job_type that the bypass tasks write.
	JobTypes = []string{"batch_import", "copilot_sync", "backup", "recommendations", "sync_environments"}
	// JobStatuses are the values of jobs.status: Celery's states plus the tracker's own.
	JobStatuses = []string{"pending", "queued", "started", "running", "retry", "success", "failure", "error", "cancelled", "revoked"}
	// EventTypes are the values of execution_events.event_type the seeder writes.
	EventTypes = []string{"created", "queued", "started", "progress", "heartbeat", "retried", "completed", "failed", "cancelled", "dead_lettered"}
)
