package runsapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/spinecore/spine-go/core"
	"github.com/spinecore/spine-go/runsapi"
)

// A gateway mounts the runs API beside its own routes. Here the dispatcher
// runs handlers in process over the memory ledger; a production gateway
// passes a pgledger.Ledger and the Celery executor instead, and the routes
// stay the same.
func Example() {
	registry := &core.Registry{}
	registry.MustRegister(core.KindTask, "greet", func(ctx context.Context, params map[string]any) (any, error) {
		return map[string]any{"greeting": fmt.Sprintf("hello, %v", params["who"])}, nil
	})
	executor := core.NewMemoryExecutor(registry, core.MemoryExecutorOptions{})
	dispatcher := core.NewDispatcher(core.NewMemoryLedger(), executor, core.DispatcherOptions{})
	defer dispatcher.Close()
	defer executor.Shutdown(context.Background())

	gateway := http.NewServeMux()
	gateway.Handle("/api/v1/", runsapi.New(dispatcher, runsapi.Options{
		MaxBodyBytes: 64 << 10,
		Logger:       slog.New(slog.DiscardHandler),
	}))
	gateway.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	server := httptest.NewServer(gateway)
	defer server.Close()

	// Submit a task, as a Python client of spine-core's API would.
	var run struct {
		RunID  string          `json:"run_id"`
		Kind   string          `json:"kind"`
		Name   string          `json:"name"`
		Status string          `json:"status"`
		Result json.RawMessage `json:"result"`
	}
	status := call(server.URL+"/api/v1/runs/task", `{"name":"greet","params":{"who":"gateway"},"idempotency_key":"greet-1"}`, &run)
	fmt.Println(status, run.Kind, run.Name)

	// Follow it until the executor has run it.
	for deadline := time.Now().Add(5 * time.Second); run.Status != "completed" && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		call(server.URL+"/api/v1/runs/"+run.RunID, "", &run)
	}
	fmt.Println(run.Status, string(run.Result))

	var events []struct {
		Type string `json:"event_type"`
	}
	call(server.URL+"/api/v1/runs/"+run.RunID+"/events", "", &events)
	var types []string
	for _, ev := range events {
		types = append(types, ev.Type)
	}
	fmt.Println(strings.Join(types, " "))

	// Bad input is refused with a problem naming the field.
	var refusal struct {
		Detail string `json:"detail"`
	}
	status = call(server.URL+"/api/v1/runs", `{"kind":"task","name":"greet","colour":"red"}`, &refusal)
	fmt.Println(status, refusal.Detail)

	// Output:
	// 200 task greet
	// completed {"greeting":"hello, gateway"}
	// created queued started completed
	// 422 colour: unknown field
}

// call GETs url, or POSTs body to it as JSON, decodes the answer into v
// and returns the status code.
func call(url, body string, v any) int {
	var (
		resp *http.Response
		err  error
	)
	if body == "" {
		resp, err = http.Get(url)
	} else {
		resp, err = http.Post(url, "application/json", strings.NewReader(body))
	}
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		log.Fatal(err)
	}
	return resp.StatusCode
}
