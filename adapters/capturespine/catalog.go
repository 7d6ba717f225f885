package capturespine

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/spinecore/spine-go/core"
)

// BypassTask is a Celery task of Capture-Spine's that does its work without
// the Dispatcher, and how a call of it becomes a pipeline run.
type BypassTask struct {
	// Task is the Celery task name, e.g. "app.tasks.backup.run_backup_for_user".
	Task string `json:"task"`
	// Pipeline is the pipeline the unified path runs instead.
	Pipeline string `json:"pipeline"`
	// Args names the task's positional parameters in order: positional
	// argument i becomes params[Args[i]]. Keyword arguments keep their names.
	Args []string `json:"args"`
}

// ExtraArgsParam is the params key that keeps positional arguments beyond
// those Args names, in order, so a call with more arguments than the catalog
// knows loses nothing.
const ExtraArgsParam = "_extra_args"

// Params turns a call's positional and keyword arguments into params. A
// keyword that repeats a positional parameter is refused, as Python refuses
// the call ("got multiple values for argument").
func (t BypassTask) Params(args []any, kwargs map[string]any) (map[string]any, error) {
	params := make(map[string]any, len(args)+len(kwargs))
	for i, v := range args {
		if i < len(t.Args) {
			params[t.Args[i]] = v
		}
	}
	if len(args) > len(t.Args) {
		params[ExtraArgsParam] = slices.Clone(args[len(t.Args):])
	}
	for _, k := range slices.Sorted(maps.Keys(kwargs)) {
		if _, dup := params[k]; dup {
			return nil, fmt.Errorf("capturespine: %s: got multiple values for argument %q (positional and keyword)", t.Task, k)
		}
		params[k] = kwargs[k]
	}
	return params, nil
}

// Catalog is the set of bypass tasks by Celery task name.
type Catalog struct {
	tasks map[string]BypassTask
}

// DefaultCatalog holds Capture-Spine's six bypass tasks. The positional
// parameter names are those the tasks' recorded payloads show.
func DefaultCatalog() *Catalog {
	c, err := NewCatalog([]BypassTask{
		{Task: "app.tasks.batch_ingestion_tasks.batch_import_documents", Pipeline: "batch_import", Args: []string{"user_id", "document_ids"}},
		{Task: "app.tasks.copilot_chat_sync.sync_copilot_chats", Pipeline: "copilot_sync", Args: []string{"user_id"}},
		{Task: "app.tasks.backup.schedule_pending_backups", Pipeline: "backup", Args: []string{}},
		{Task: "app.tasks.backup.run_backup_for_user", Pipeline: "backup", Args: []string{"user_id"}},
		{Task: "app.tasks.sync.sync_environments", Pipeline: "sync_environments", Args: []string{"environments"}},
		{Task: "app.tasks.recommendations.update_recommendations", Pipeline: "recommendations", Args: []string{"user_id"}},
	})
	if err != nil {
		panic("capturespine: default catalog: " + err.Error())
	}
	return c
}

// NewCatalog builds a catalog, refusing duplicates and incomplete entries.
func NewCatalog(tasks []BypassTask) (*Catalog, error) {
	c := &Catalog{tasks: make(map[string]BypassTask, len(tasks))}
	for i, t := range tasks {
		switch {
		case t.Task == "":
			return nil, fmt.Errorf("capturespine: catalog entry %d: task is empty", i)
		case t.Pipeline == "":
			return nil, fmt.Errorf("capturespine: catalog entry %d (%s): pipeline is empty", i, t.Task)
		}
		seen := map[string]bool{ExtraArgsParam: true}
		for _, name := range t.Args {
			if name == "" || seen[name] {
				return nil, fmt.Errorf("capturespine: catalog entry %d (%s): positional name %q is empty, repeated or reserved", i, t.Task, name)
			}
			seen[name] = true
		}
		if _, dup := c.tasks[t.Task]; dup {
			return nil, fmt.Errorf("capturespine: catalog: task %s listed twice", t.Task)
		}
		t.Args = slices.Clone(t.Args)
		c.tasks[t.Task] = t
	}
	return c, nil
}

// catalogFile is the JSON an operator writes: {"tasks": [{task, pipeline, args}]}.
type catalogFile struct {
	Tasks []BypassTask `json:"tasks"`
}

// LoadCatalog reads a JSON catalog file and lays it over DefaultCatalog: an
// entry for a known task replaces it, a new task is added. So adding a task
// needs no rebuild, only a file naming it.
func LoadCatalog(r io.Reader) (*Catalog, error) {
	var f catalogFile
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("capturespine: catalog file: %w", err)
	}
	added, err := NewCatalog(f.Tasks)
	if err != nil {
		return nil, err
	}
	c := DefaultCatalog()
	maps.Copy(c.tasks, added.tasks)
	return c, nil
}

// Lookup returns the entry for a Celery task name. A task missing from the
// catalog is an UnknownValueError: it is reported, never guessed.
func (c *Catalog) Lookup(task string) (BypassTask, error) {
	t, ok := c.tasks[task]
	if !ok {
		return BypassTask{}, &UnknownValueError{Column: "celery task", Value: task,
			Fix: fmt.Sprintf(`add it to a catalog file: {"tasks": [{"task": %q, "pipeline": "<name>", "args": ["<first positional>", ...]}]}`, task)}
	}
	return t, nil
}

// Tasks lists the catalog's entries by task name.
func (c *Catalog) Tasks() []BypassTask {
	out := make([]BypassTask, 0, len(c.tasks))
	for _, name := range slices.Sorted(maps.Keys(c.tasks)) {
		out = append(out, c.tasks[name])
	}
	return out
}

// WorkSpec maps one call of a bypass task to the pipeline spec that replaces
// it. The caller sets what the call's context knows (idempotency key from
// the Celery task id, lane, trigger source).
func (c *Catalog) WorkSpec(task string, args []any, kwargs map[string]any) (core.WorkSpec, error) {
	t, err := c.Lookup(task)
	if err != nil {
		return core.WorkSpec{}, err
	}
	params, err := t.Params(args, kwargs)
	if err != nil {
		return core.WorkSpec{}, err
	}
	return core.NewPipeline(t.Pipeline, params), nil
}
