package runsapi

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spinecore/spine-go/core"
)

// listQuery names the query parameters of a list route, so the runs view
// and the executions view share one parser and differ only in names.
type listQuery struct {
	kind   string   // "" when the view has no kind filter
	names  []string // synonyms for the name filter
	parent string   // "" when the view has no parent filter
	after  string
	before string
	// unsupported are filters the view's clients know but the dispatcher
	// cannot apply: refused, because ignoring one would answer rows the
	// client asked to leave out.
	unsupported []string
}

// runsQuery is GET /runs and GET /runs/{run_id}/children: Python's kind,
// name, status, parent_run_id and limit, the created_after/created_before
// window, and a cursor in place of offset.
var runsQuery = listQuery{kind: "kind", names: []string{"name", "pipeline"}, parent: "parent_run_id",
	after: "created_after", before: "created_before"}

// parseFilter reads a list route's query. Parameters it does not know are
// ignored, as FastAPI ignores them; a parameter given twice, a value of
// the wrong form or a limit outside 1..200 is a 422 naming the parameter;
// an unknown status, a cursor this API did not make, or an offset is a 400
// (Python's handler checks status itself and answers 400).
func (lq listQuery) parseFilter(q url.Values) (core.RunFilter, error) {
	var (
		f       core.RunFilter
		invalid []fieldError // 422
		refused []fieldError // 400
	)
	single := func(name string) (string, bool) {
		vs := q[name]
		if len(vs) > 1 {
			invalid = append(invalid, newFieldError(fieldInvalidValue, name, "given %d times; give it once", len(vs)))
			return "", false
		}
		if len(vs) == 0 || vs[0] == "" {
			return "", false
		}
		return vs[0], true
	}

	if lq.kind != "" {
		if s, ok := single(lq.kind); ok {
			f.Kind = core.Kind(s)
			if !f.Kind.Valid() {
				invalid = append(invalid, newFieldError(fieldInvalidValue, lq.kind, "%s is not one of task, pipeline, workflow, step", echo(s)))
			}
		}
	}
	for _, name := range lq.names {
		s, ok := single(name)
		if !ok {
			continue
		}
		if f.Name != "" && f.Name != s {
			invalid = append(invalid, newFieldError(fieldInvalidValue, name, "%s contradicts %s=%s", echo(s), lq.names[0], echo(f.Name)))
			continue
		}
		f.Name = s
	}
	seen := map[core.RunStatus]bool{}
	for _, v := range q["status"] {
		for _, part := range strings.Split(v, ",") {
			st := core.RunStatus(strings.TrimSpace(part))
			switch {
			case st == "" || seen[st]:
			case !st.Valid():
				refused = append(refused, newFieldError(fieldInvalidValue, "status",
					"invalid status %s: not one of pending, queued, running, completed, failed, cancelled, dead_lettered", echo(string(st))))
			default:
				seen[st] = true
				f.Statuses = append(f.Statuses, st)
			}
		}
	}
	if lq.parent != "" {
		f.ParentRunID, _ = single(lq.parent)
	}
	for _, bound := range []struct {
		name string
		dst  *time.Time
	}{{lq.after, &f.CreatedFrom}, {lq.before, &f.CreatedBefore}} {
		if s, ok := single(bound.name); ok {
			t, err := parseQueryTime(s)
			if err != nil {
				invalid = append(invalid, newFieldError(fieldInvalidValue, bound.name, "%s is not an ISO-8601 date or datetime", echo(s)))
				continue
			}
			*bound.dst = t
		}
	}
	if s, ok := single("limit"); ok {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > core.MaxListLimit {
			invalid = append(invalid, newFieldError(fieldInvalidValue, "limit", "must be an integer from 1 to %d, not %s", core.MaxListLimit, echo(s)))
		} else {
			f.Limit = n
		}
	}
	if s, ok := single("cursor"); ok {
		if _, err := core.DecodeCursor(s); err != nil {
			refused = append(refused, newFieldError(fieldInvalidValue, "cursor", "not a cursor this API made; pass next_cursor of the previous page unchanged"))
		} else {
			f.Cursor = s
		}
	}
	if s, ok := single("offset"); ok {
		// Ignoring an offset would hand an offset-paging client the first
		// page forever.
		if n, err := strconv.Atoi(s); err != nil || n < 0 {
			invalid = append(invalid, newFieldError(fieldInvalidValue, "offset", "must be a non-negative integer, not %s", echo(s)))
		} else if n > 0 {
			refused = append(refused, newFieldError(fieldInvalidValue, "offset", "offset paging is not supported: follow next_cursor"))
		}
	}

	for _, name := range lq.unsupported {
		if _, ok := q[name]; ok {
			refused = append(refused, newFieldError(fieldInvalidValue, name, "this view cannot filter by %s", name))
		}
	}

	switch {
	case len(invalid) > 0:
		return core.RunFilter{}, validationProblem(append(invalid, refused...))
	case len(refused) > 0:
		p := validationProblem(refused)
		p.Status, p.Code = http.StatusBadRequest, codeInvalidInput
		return core.RunFilter{}, p
	}
	return f, nil
}

// parseQueryTime reads an ISO-8601 datetime, or a date meaning its
// midnight UTC. An unescaped "+" of an offset arrives as a space; it is
// read as the "+" the client meant.
func parseQueryTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	t, err := core.ParseTime(s)
	if err != nil {
		if i := strings.LastIndexByte(s, ' '); i > 0 {
			if t2, err2 := core.ParseTime(s[:i] + "+" + s[i+1:]); err2 == nil {
				return t2, nil
			}
		}
		return time.Time{}, err
	}
	return t, nil
}
