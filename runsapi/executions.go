package runsapi

import (
	"fmt"
	"net/http"

	"github.com/spinecore/spine-go/adapters/capturespine"
)

// routeExecutions registers Capture-Spine's read view of the same rows:
// each run rendered as the executions row it is, through
// capturespine.FromRunRecord. Submitting and controlling work stays on the
// runs routes, so there is one write path.
func (a *api) routeExecutions() {
	a.handle("GET", "/executions", a.listExecutions)
	a.handle("GET", "/executions/{execution_id}", a.getExecution)
}

// executionsQuery filters by the executions columns the dispatcher can
// filter on; lane and feed_id it cannot, and says so.
var executionsQuery = listQuery{kind: "kind", names: []string{"pipeline_name", "pipeline"}, parent: "parent_run_id",
	after: "created_after", before: "created_before", unsupported: []string{"lane", "feed_id"}}

// executionPage is the answer of GET /executions.
type executionPage struct {
	Executions []capturespine.Execution `json:"executions"`
	NextCursor *string                  `json:"next_cursor"`
}

func (a *api) listExecutions(w http.ResponseWriter, r *http.Request) {
	filter, err := executionsQuery.parseFilter(r.URL.Query())
	if err != nil {
		a.fail(w, r, "", err)
		return
	}
	page, err := a.d.ListRuns(r.Context(), filter)
	if err != nil {
		a.fail(w, r, "", err)
		return
	}
	out := executionPage{Executions: make([]capturespine.Execution, 0, len(page.Runs))}
	for _, run := range page.Runs {
		e, err := capturespine.FromRunRecord(run)
		if err != nil {
			a.failExecution(w, r, run.RunID, fmt.Errorf("run %s as an execution: %w", run.RunID, err))
			return
		}
		out.Executions = append(out.Executions, e)
	}
	if page.NextCursor != "" {
		out.NextCursor = &page.NextCursor
	}
	a.writeJSON(w, r, http.StatusOK, out)
}

func (a *api) getExecution(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("execution_id")
	run, err := a.d.GetRun(r.Context(), id)
	if err != nil {
		a.failExecution(w, r, id, err)
		return
	}
	e, err := capturespine.FromRunRecord(run)
	if err != nil {
		a.failExecution(w, r, id, fmt.Errorf("run %s as an execution: %w", id, err))
		return
	}
	a.writeJSON(w, r, http.StatusOK, e)
}

// failExecution is fail in the view's words. A run that no executions row
// can hold is a 500: the ledger holds something the adapter refuses.
func (a *api) failExecution(w http.ResponseWriter, r *http.Request, id string, err error) {
	p := problemFor(id, err)
	if p.Code == codeNotFound {
		p.Detail = fmt.Sprintf("execution %s not found", id)
	}
	a.failAs(w, r, p, id, err)
}
