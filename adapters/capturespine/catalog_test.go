package capturespine_test

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/spinecore/spine-go/adapters/capturespine"
	"github.com/spinecore/spine-go/celerybridge"
	"github.com/spinecore/spine-go/core"
)

// celeryCall sends name(*args, **kwargs) through the Celery wire as a 5.2.6
// producer writes it, and decodes it back as the side-car will.
func celeryCall(t *testing.T, name string, args []any, kwargs map[string]any) ([]any, map[string]any) {
	t.Helper()
	msg, err := celerybridge.NewTaskMessage(name, args, kwargs, celerybridge.TaskOptions{})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := msg.Encode()
	if err != nil {
		t.Fatal(err)
	}
	task, err := celerybridge.DecodeTask(raw)
	if err != nil {
		t.Fatal(err)
	}
	gotArgs, err := task.DecodeArgs()
	if err != nil {
		t.Fatal(err)
	}
	gotKwargs, err := task.DecodeKwargs()
	if err != nil {
		t.Fatal(err)
	}
	return gotArgs, gotKwargs
}

func TestEachBypassTaskMapsToItsPipeline(t *testing.T) {
	t.Parallel()
	user := "e07587e9-976e-4d06-be63-566f2b27b4d3"
	cases := []struct {
		task     string
		args     []any
		kwargs   map[string]any
		pipeline string
		params   string
	}{
		{"app.tasks.batch_ingestion_tasks.batch_import_documents", []any{user, []any{833728, 819271}},
			map[string]any{"source": "notion", "overwrite": false}, "batch_import",
			`{"document_ids":[833728,819271],"overwrite":false,"source":"notion","user_id":"` + user + `"}`},
		{"app.tasks.copilot_chat_sync.sync_copilot_chats", nil,
			map[string]any{"user_id": user, "since": "2025-05-20T08:00:00+00:00", "chat_ids": []any{"c-1"}}, "copilot_sync",
			`{"chat_ids":["c-1"],"since":"2025-05-20T08:00:00+00:00","user_id":"` + user + `"}`},
		{"app.tasks.backup.schedule_pending_backups", nil, nil, "backup", `{}`},
		{"app.tasks.backup.run_backup_for_user", []any{user},
			map[string]any{"destination": "s3://backups/" + user, "include_attachments": true}, "backup",
			`{"destination":"s3://backups/` + user + `","include_attachments":true,"user_id":"` + user + `"}`},
		{"app.tasks.sync.sync_environments", []any{[]any{"prod", "dév"}}, map[string]any{"dry_run": true}, "sync_environments",
			`{"dry_run":true,"environments":["prod","dév"]}`},
		{"app.tasks.recommendations.update_recommendations", nil,
			map[string]any{"user_id": user, "limit": 20, "weights": map[string]any{"recency": 0.4}}, "recommendations",
			`{"limit":20,"user_id":"` + user + `","weights":{"recency":0.4}}`},
		// More positional arguments than the catalog names: kept, in order.
		{"app.tasks.backup.run_backup_for_user", []any{user, "s3://x", 9007199254740993}, nil, "backup",
			`{"_extra_args":["s3://x",9007199254740993],"user_id":"` + user + `"}`},
	}
	catalog := capturespine.DefaultCatalog()
	for _, c := range cases {
		args, kwargs := celeryCall(t, c.task, c.args, c.kwargs)
		spec, err := catalog.WorkSpec(c.task, args, kwargs)
		if err != nil {
			t.Fatalf("%s: %v", c.task, err)
		}
		params, _ := json.Marshal(spec.Params)
		if spec.Kind != core.KindPipeline || spec.Name != c.pipeline || string(params) != c.params {
			t.Errorf("%s → %s:%s %s\nwant pipeline:%s %s", c.task, spec.Kind, spec.Name, params, c.pipeline, c.params)
		}
	}
	if n := len(catalog.Tasks()); n != 6 {
		t.Errorf("default catalog has %d tasks, want the six bypass tasks", n)
	}
}

// A message a real Celery 5.2.6 producer wrote:
// batch_import_documents.delay('imp-1', documents=['a', 'b']).
func TestCatalogMapsACapturedCeleryMessage(t *testing.T) {
	t.Parallel()
	var capture struct {
		Cases []struct {
			Case     string
			Messages []struct{ Raw string }
		}
	}
	data, err := os.ReadFile("../../testdata/celery-5.2.6/captured-protocol2.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &capture); err != nil {
		t.Fatal(err)
	}
	raw := capture.Cases[0].Messages[0].Raw
	if capture.Cases[0].Case != "delay" || !strings.Contains(raw, "batch_import_documents") {
		t.Fatalf("capture changed: first case is %q", capture.Cases[0].Case)
	}
	task, err := celerybridge.DecodeTask([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	args, _ := task.DecodeArgs()
	kwargs, _ := task.DecodeKwargs()
	spec, err := capturespine.DefaultCatalog().WorkSpec(task.Name, args, kwargs)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"user_id": "imp-1", "documents": []any{"a", "b"}}
	if spec.Name != "batch_import" || !reflect.DeepEqual(spec.Params, want) {
		t.Errorf("spec = %s %v, want batch_import %v", spec.Name, spec.Params, want)
	}
}

func TestCatalogReportsWhatItCannotMap(t *testing.T) {
	t.Parallel()
	catalog := capturespine.DefaultCatalog()
	_, err := catalog.WorkSpec("app.tasks.misc.anything", nil, nil)
	var unknown *capturespine.UnknownValueError
	if !errors.As(err, &unknown) || unknown.Value != "app.tasks.misc.anything" || !strings.Contains(err.Error(), `"tasks"`) {
		t.Errorf("unknown task: %v", err)
	}
	_, err = catalog.WorkSpec("app.tasks.backup.run_backup_for_user", []any{"u1"}, map[string]any{"user_id": "u2"})
	if err == nil || !strings.Contains(err.Error(), `multiple values for argument "user_id"`) {
		t.Errorf("positional and keyword user_id: %v", err)
	}
}

func TestLoadCatalogAddsAndReplacesTasks(t *testing.T) {
	t.Parallel()
	file := `{"tasks": [
		{"task": "app.tasks.misc.anything", "pipeline": "misc", "args": ["a", "b"]},
		{"task": "app.tasks.sync.sync_environments", "pipeline": "env_sync_v2", "args": []}
	]}`
	catalog, err := capturespine.LoadCatalog(strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := catalog.WorkSpec("app.tasks.misc.anything", []any{1, 2}, map[string]any{"c": 3})
	if err != nil || spec.Name != "misc" || len(spec.Params) != 3 {
		t.Errorf("added task: %v %v", spec, err)
	}
	spec, err = catalog.WorkSpec("app.tasks.sync.sync_environments", []any{"prod"}, nil)
	if err != nil || spec.Name != "env_sync_v2" || !reflect.DeepEqual(spec.Params["_extra_args"], []any{"prod"}) {
		t.Errorf("replaced task: %v %v", spec, err)
	}
	if _, err := catalog.Lookup("app.tasks.backup.run_backup_for_user"); err != nil {
		t.Errorf("a file must keep the default tasks it does not name: %v", err)
	}

	for _, bad := range []string{
		`{"tasks": [{"task": "t", "pipeline": ""}]}`,
		`{"tasks": [{"task": "", "pipeline": "p"}]}`,
		`{"tasks": [{"task": "t", "pipeline": "p", "args": ["a", "a"]}]}`,
		`{"tasks": [{"task": "t", "pipeline": "p", "args": ["_extra_args"]}]}`,
		`{"tasks": [{"task": "t", "pipeline": "p"}, {"task": "t", "pipeline": "q"}]}`,
		`{"tasks": [{"task": "t", "pipeline": "p", "queue": "x"}]}`,
		`[]`,
	} {
		if _, err := capturespine.LoadCatalog(strings.NewReader(bad)); err == nil {
			t.Errorf("LoadCatalog(%s) accepted it", bad)
		}
	}
}
