package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spinecore/spine-go/celerybridge"
	"github.com/spinecore/spine-go/internal/celerytest"
	"github.com/spinecore/spine-go/internal/testsvc"
)

// Messages a real Celery 5.2.6 producer published are listed decoded, in the
// order a worker takes them, without being taken.
func TestCeleryInspectShowsWhatPythonPublished(t *testing.T) {
	t.Parallel()
	url := testsvc.NewRedisDB(t)
	py := celerytest.Python(t)
	cmd := exec.Command(py, filepath.Join(celerytest.InteropDir(t), "cli_producer.py"), "intercept")
	cmd.Env = append(os.Environ(), "SPINE_REDIS_URL="+url)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	var ids map[string]string
	if err := json.Unmarshal(out, &ids); err != nil {
		t.Fatal(err)
	}

	stdout, stderr, err := run(t, map[string]string{"REDIS_URL": url}, "celery", "inspect", "--queue", "intercept", "-o", "json")
	if err != nil {
		t.Fatalf("inspect: %v\n%s", err, stderr)
	}
	var views []messageView
	sc := bufio.NewScanner(strings.NewReader(stdout))
	for sc.Scan() {
		var v messageView
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("not one JSON object per line: %q: %v", sc.Text(), err)
		}
		views = append(views, v)
	}
	if len(views) != 5 {
		t.Fatalf("%d messages listed, want 5:\n%s", len(views), stdout)
	}
	byID := map[string]messageView{}
	var order []string
	for _, v := range views {
		byID[v.ID] = v
		order = append(order, v.ID)
	}
	// Lower priority numbers first: list 0 (priorities 0-2, FIFO), then
	// list 6 (priority 7).
	if order[len(order)-1] != ids["eta"] || order[0] != ids["plain"] {
		t.Errorf("consume order %v, want plain first and the priority-7 message last (ids %v)", order, ids)
	}
	plain := byID[ids["plain"]]
	var kwargs map[string]string
	_ = json.Unmarshal(plain.Kwargs, &kwargs)
	if plain.Task != "app.tasks.backup.run_backup_for_user" || string(plain.Args) != "[42]" ||
		kwargs["backup_type"] != "incremental" || plain.Protocol != 2 || plain.ETA != nil {
		t.Errorf("plain message %+v", plain)
	}
	eta := byID[ids["eta"]]
	if eta.ETA == nil || eta.Expires == nil || eta.Priority != 7 || eta.PriorityList != 6 ||
		time.Until(*eta.ETA) < 50*time.Minute || !eta.Expires.After(*eta.ETA) {
		t.Errorf("eta message %+v", eta)
	}
	if v1 := byID[ids["protocol1"]]; v1.Protocol != 1 || v1.Task != "app.tasks.copilot_chat_sync.sync_copilot_chats" || string(v1.Args) != "[7]" {
		t.Errorf("protocol 1 message %+v", v1)
	}
	if p := byID[ids["pickle"]]; !p.Opaque || p.Args != nil || p.ContentType != celerybridge.ContentTypePickle {
		t.Errorf("pickle message %+v: must be shown opaque, never decoded", p)
	}
	// Read-only: everything is still there.
	stdout, _, _ = run(t, map[string]string{"REDIS_URL": url}, "celery", "inspect", "--queue", "intercept", "--limit", "2")
	if !strings.Contains(stdout, "5 waiting, showing 2") {
		t.Errorf("text inspect:\n%s", stdout)
	}
}

// send publishes what a real worker runs, and --wait prints its result.
func TestCelerySendAndResult(t *testing.T) {
	t.Parallel()
	url := testsvc.NewRedisDB(t)
	celerytest.StartWorker(t, url, celerytest.WorkerOptions{Module: "executor_worker", Queues: []string{"cli"}})
	env := map[string]string{"CELERY_BROKER_URL": url}

	stdout, stderr, err := run(t, env, "celery", "send", "spine.execute.task", "--queue", "cli",
		"--args", `["echo", {"n": 18446744073709551617}]`, "--kwargs", `{"metadata": {"k": "v"}}`, "--wait", "20s", "-o", "json")
	if err != nil {
		t.Fatalf("send: %v\n%s%s", err, stdout, stderr)
	}
	var res resultView
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || res.State != "SUCCESS" ||
		!strings.Contains(string(res.Result), "18446744073709551617") || !strings.Contains(string(res.Result), `"k": "v"`) {
		t.Fatalf("send --wait printed %s (%v)", stdout, err)
	}

	_, stderr, err = run(t, env, "celery", "send", "spine.execute.task", "--queue", "cli",
		"--args", `["fail", {"msg": "no such feed"}]`, "--wait", "20s")
	if err == nil || !strings.Contains(stderr, "ended FAILURE") {
		t.Errorf("a failing task: %v %s", err, stderr)
	}

	stdout, _, err = run(t, env, "celery", "send", "spine.execute.task", "--queue", "cli", "--args", `["later", {}]`,
		"--countdown", "1h", "--protocol", "1")
	id := strings.TrimSpace(stdout)
	if err != nil || len(id) != 36 {
		t.Fatalf("send without --wait printed %q (%v)", stdout, err)
	}
	stdout, _, err = run(t, env, "celery", "result", id)
	if err != nil || !strings.Contains(stdout, "PENDING") {
		t.Errorf("result of a task not run yet: %v\n%s", err, stdout)
	}
	for _, bad := range [][]string{{"--args", `{"a": 1}`}, {"--kwargs", `[1]`}, {"--protocol", "3"}, {"--countdown", "1s", "--eta", "10m"}} {
		if _, _, err := run(t, env, append([]string{"celery", "send", "x"}, bad...)...); err == nil {
			t.Errorf("send %v accepted", bad)
		}
	}
}

// unacked lists claimed messages with their age, and --restore puts back
// those past the visibility timeout.
func TestCeleryUnacked(t *testing.T) {
	t.Parallel()
	url := testsvc.NewRedisDB(t)
	opts, err := celerybridge.ParseBrokerURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	ctx := context.Background()
	tr := celerybridge.NewTransport(rdb, celerybridge.TransportOptions{})
	m, err := celerybridge.NewTaskMessage("app.tasks.sync.sync_environments", []any{"prod"}, nil, celerybridge.TaskOptions{Queue: "work"})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := m.Encode()
	if err := tr.Publish(ctx, "", "work", raw); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Claim(ctx, []string{"work"}, time.Second); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"REDIS_URL": url}
	stdout, _, err := run(t, env, "celery", "unacked", "-o", "json")
	var u unackedView
	if err != nil || json.Unmarshal([]byte(stdout), &u) != nil || u.ID != m.Headers.ID || u.Queue != "work" || u.Overdue {
		t.Fatalf("unacked: %v %s", err, stdout)
	}
	stdout, _, _ = run(t, env, "celery", "unacked", "--restore")
	if !strings.Contains(stdout, "Restored 0 messages") {
		t.Errorf("restore within the timeout: %s", stdout)
	}
	time.Sleep(1100 * time.Millisecond)
	stdout, _, err = run(t, env, "celery", "unacked", "--restore", "--visibility-timeout", "1s")
	if err != nil || !strings.Contains(stdout, "Restored 1 message") {
		t.Fatalf("restore past the timeout: %v %s", err, stdout)
	}
	if n, _ := tr.Len(ctx, "work"); n != 1 {
		t.Errorf("queue holds %d after restore, want 1", n)
	}
}

func TestCeleryCommandsNeverPrintTheBrokerPassword(t *testing.T) {
	t.Parallel()
	const secret = "br0ker-Secret-pw"
	for _, args := range [][]string{
		{"--redis-url", "redis://:" + secret + "@127.0.0.1:1/0", "celery", "inspect", "--queue", "q"},
		{"--redis-url", "rediss://user:" + secret + "@127.0.0.1:1/0", "celery", "unacked"},
		{"--redis-url", "redis://:" + secret + "@[::1", "celery", "result", "x"},
	} {
		stdout, stderr, err := run(t, map[string]string{}, args...)
		if err == nil || strings.Contains(stdout+stderr, secret) {
			t.Errorf("%v: err %v, printed:\n%s%s", args[2:], err, stdout, stderr)
		}
	}
	if _, stderr, err := run(t, map[string]string{}, "celery", "inspect", "--queue", "q"); err == nil || !strings.Contains(stderr, "no Redis given") {
		t.Errorf("no broker anywhere: %v %s", err, stderr)
	}
}
