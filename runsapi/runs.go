package runsapi

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/spinecore/spine-go/core"
)

// routeRuns registers spine-core's runs router.
func (a *api) routeRuns() {
	a.handle("GET", "/runs", a.listRuns)
	a.handle("POST", "/runs", a.submit(formRun))
	a.handle("POST", "/runs/task", a.submit(formTask))
	a.handle("POST", "/runs/pipeline", a.submit(formPipeline))
	a.handle("GET", "/runs/{run_id}", a.getRun)
	a.handle("POST", "/runs/{run_id}/cancel", a.cancelRun)
	a.handle("POST", "/runs/{run_id}/retry", a.retryRun)
	a.handle("GET", "/runs/{run_id}/events", a.runEvents)
	a.handle("GET", "/runs/{run_id}/children", a.runChildren)
}

// runPage is the answer of the list routes: one page of runs, newest
// first, and the cursor of the next page (null on the last).
type runPage struct {
	Runs       []core.RunRecord `json:"runs"`
	NextCursor *string          `json:"next_cursor"`
}

func newRunPage(p core.RunPage) runPage {
	out := runPage{Runs: p.Runs}
	if out.Runs == nil {
		out.Runs = []core.RunRecord{}
	}
	if p.NextCursor != "" {
		out.NextCursor = &p.NextCursor
	}
	return out
}

func (a *api) listRuns(w http.ResponseWriter, r *http.Request) {
	filter, err := runsQuery.parseFilter(r.URL.Query())
	if err != nil {
		a.fail(w, r, "", err)
		return
	}
	page, err := a.d.ListRuns(r.Context(), filter)
	if err != nil {
		a.fail(w, r, "", err)
		return
	}
	a.writeJSON(w, r, http.StatusOK, newRunPage(page))
}

func (a *api) getRun(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("run_id")
	run, err := a.d.GetRun(r.Context(), id)
	if err != nil {
		a.fail(w, r, id, err)
		return
	}
	a.writeJSON(w, r, http.StatusOK, run)
}

// submit serves the submit route of form.
func (a *api) submit(form specForm) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := a.readBody(w, r)
		if err != nil {
			a.fail(w, r, "", err)
			return
		}
		spec, err := decodeSpec(body, form)
		if err != nil {
			a.fail(w, r, "", err)
			return
		}
		run, err := a.d.Submit(r.Context(), spec)
		a.writeSubmitted(w, r, run, err)
	}
}

func (a *api) cancelRun(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("run_id")
	if err := a.noFields(w, r, "POST /runs/{run_id}/cancel"); err != nil {
		a.fail(w, r, id, err)
		return
	}
	run, err := a.d.Cancel(r.Context(), id)
	if err != nil {
		a.fail(w, r, id, err)
		return
	}
	a.writeJSON(w, r, http.StatusOK, run)
}

func (a *api) retryRun(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("run_id")
	if err := a.noFields(w, r, "POST /runs/{run_id}/retry"); err != nil {
		a.fail(w, r, id, err)
		return
	}
	run, err := a.d.Retry(r.Context(), id)
	if err != nil && (run.RunID == "" || run.RunID == id) {
		// Retry refuses with the old run (not failed) or none (not
		// found); a new run comes back only once it was recorded.
		a.fail(w, r, id, err)
		return
	}
	a.writeSubmitted(w, r, run, err)
}

func (a *api) noFields(w http.ResponseWriter, r *http.Request, route string) error {
	body, err := a.readBody(w, r)
	if err != nil {
		return err
	}
	return decodeNoFields(body, route)
}

func (a *api) runEvents(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("run_id")
	events, err := a.d.Events(r.Context(), id)
	if err != nil {
		a.fail(w, r, id, err)
		return
	}
	if events == nil {
		events = []core.RunEvent{}
	}
	a.writeJSON(w, r, http.StatusOK, events)
}

func (a *api) runChildren(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("run_id")
	filter, err := runsQuery.parseFilter(r.URL.Query())
	if err != nil {
		a.fail(w, r, id, err)
		return
	}
	// As in Python, the children of a run that does not exist are a 404,
	// not an empty list.
	if _, err := a.d.GetRun(r.Context(), id); err != nil {
		a.fail(w, r, id, err)
		return
	}
	page, err := a.d.Children(r.Context(), id, filter)
	if err != nil {
		a.fail(w, r, id, err)
		return
	}
	a.writeJSON(w, r, http.StatusOK, newRunPage(page))
}

// writeSubmitted answers a submit or a retry. As in Python, an executor
// that refuses the run does not make the request fail: the run is recorded
// failed (or dead-lettered) with the executor's error, and that run is the
// answer. A full queue or a shut-down executor is the exception: the client
// should come back later, so it gets 503 with Retry-After, and the run
// recorded meanwhile is named in run_id.
func (a *api) writeSubmitted(w http.ResponseWriter, r *http.Request, run core.RunRecord, err error) {
	if err == nil {
		a.writeJSON(w, r, http.StatusOK, run)
		return
	}
	if run.RunID == "" {
		a.fail(w, r, "", err)
		return
	}
	if errors.Is(err, core.ErrBackpressure) || errors.Is(err, core.ErrClosed) {
		p := problemFor(run.RunID, err)
		p.RunID = run.RunID
		advice := "send an idempotency_key so that resubmitting cannot make a second run"
		if run.Spec.IdempotencyKey != "" {
			advice = "resubmitting with the same idempotency_key returns it instead of making a second run"
		}
		p.Detail = fmt.Sprintf("%s (run %s was recorded %s; %s)", p.Detail, run.RunID, run.Status, advice)
		a.log.Warn("executor refused run", "method", r.Method, "path", r.URL.Path, "run_id", run.RunID, "err", err)
		a.writeProblem(w, r, p)
		return
	}
	if run.Status == core.StatusFailed || run.Status == core.StatusDeadLettered {
		a.log.Info("executor refused run; answered with the failed run", "run_id", run.RunID, "err", err)
		a.writeJSON(w, r, http.StatusOK, run)
		return
	}
	// Recorded, but the ledger could not record what happened next.
	p := problemFor(run.RunID, err)
	p.RunID = run.RunID
	a.log.Error("submit failed after the run was recorded", "method", r.Method, "path", r.URL.Path, "run_id", run.RunID, "err", err)
	a.writeProblem(w, r, p)
}
