package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/spinecore/spine-go/celerybridge"
	"github.com/spinecore/spine-go/core"
	"github.com/spinecore/spine-go/internal/redact"
)

// celeryFlags are shared by the celery commands.
type celeryFlags struct {
	keyPrefix  string
	visibility time.Duration
}

func (a *app) celeryCmd() *cobra.Command {
	var f celeryFlags
	cmd := &cobra.Command{
		Use:   "celery",
		Short: "Look at and talk to the Celery broker: queues, unacked messages, tasks, results",
		Long: `Tools for a live Celery estate on Redis, speaking kombu's wire format exactly:
inspect (read-only) shows what waits in a queue, send publishes a task like
apply_async, result reads a task's result, unacked lists claimed-but-unacked
messages and, with --restore, puts back those past the visibility timeout.`,
	}
	cmd.PersistentFlags().StringVar(&f.keyPrefix, "key-prefix", "", "kombu's global_keyprefix, if the estate sets one")
	cmd.PersistentFlags().DurationVar(&f.visibility, "visibility-timeout", time.Hour, "the broker's visibility_timeout (broker_transport_options)")
	cmd.AddCommand(a.celeryInspectCmd(&f), a.celerySendCmd(&f), a.celeryResultCmd(&f), a.celeryUnackedCmd(&f))
	return cmd
}

// broker connects to the Redis broker, refusing to guess one.
func (a *app) broker(cmd *cobra.Command, f *celeryFlags) (*redis.Client, *celerybridge.Transport, *celerybridge.ResultBackend, error) {
	if a.redisURL == "" {
		return nil, nil, nil, errors.New("no Redis given: pass --redis-url, or set CELERY_BROKER_URL or REDIS_URL")
	}
	opts, err := celerybridge.ParseBrokerURL(a.redisURL)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("broker URL %s: %w", redact.URL(a.redisURL), err)
	}
	a.scrub.Add(opts.Password)
	rdb := redis.NewClient(opts)
	if err := rdb.Ping(cmd.Context()).Err(); err != nil {
		_ = rdb.Close()
		return nil, nil, nil, fmt.Errorf("connect to %s: %w", redact.URL(a.redisURL), err)
	}
	t := celerybridge.NewTransport(rdb, celerybridge.TransportOptions{KeyPrefix: f.keyPrefix, VisibilityTimeout: f.visibility, Logger: a.log})
	r := celerybridge.NewResultBackend(rdb, celerybridge.ResultBackendOptions{KeyPrefix: f.keyPrefix})
	return rdb, t, r, nil
}

// messageView is a queued or unacked message as inspect shows it.
type messageView struct {
	Queue        string          `json:"queue"`
	PriorityList int             `json:"priority_list"`
	Task         string          `json:"task,omitempty"`
	ID           string          `json:"id,omitempty"`
	Args         json.RawMessage `json:"args,omitempty"`
	Kwargs       json.RawMessage `json:"kwargs,omitempty"`
	ETA          *time.Time      `json:"eta"`
	Expires      *time.Time      `json:"expires"`
	Priority     int             `json:"priority"`
	Retries      int             `json:"retries"`
	ParentID     string          `json:"parent_id,omitempty"`
	RootID       string          `json:"root_id,omitempty"`
	GroupID      string          `json:"group_id,omitempty"`
	Protocol     int             `json:"protocol,omitempty"`
	ContentType  string          `json:"content_type,omitempty"`
	Opaque       bool            `json:"opaque,omitempty"`
	Error        string          `json:"error,omitempty"`
	Bytes        int             `json:"bytes"`
}

func viewMessage(queue string, step int, raw []byte) messageView {
	v := messageView{Queue: queue, PriorityList: step, Bytes: len(raw)}
	task, err := celerybridge.DecodeTask(raw)
	if err != nil {
		v.Error = err.Error()
		return v
	}
	v.Task, v.ID, v.Args, v.Kwargs = task.Name, task.ID, task.Args, task.Kwargs
	v.Priority, v.Retries, v.ParentID, v.RootID, v.GroupID = task.Priority, task.Retries, task.ParentID, task.RootID, task.GroupID
	v.Protocol, v.ContentType, v.Opaque = int(task.Protocol), task.ContentType, task.Opaque
	if !task.ETA.IsZero() {
		v.ETA = &task.ETA
	}
	if !task.Expires.IsZero() {
		v.Expires = &task.Expires
	}
	return v
}

// jsonLines writes one compact JSON document per line: the form scripts
// (jq, grep) read a stream of messages in.
func jsonLines[T any](w io.Writer, items []T) error {
	enc := json.NewEncoder(w)
	for _, it := range items {
		if err := enc.Encode(it); err != nil {
			return err
		}
	}
	return nil
}

func (a *app) celeryInspectCmd(f *celeryFlags) *cobra.Command {
	var queue string
	var limit int
	cmd := &cobra.Command{
		Use:   "inspect --queue Q",
		Short: "List the messages waiting in a queue, decoded (read-only)",
		Long: `Lists the messages waiting in every priority list of a queue, in the order a
worker would take them, decoded: task, id, args, kwargs, eta, expires, priority,
retries, lineage, protocol and content type. Pickle, yaml and msgpack bodies are
shown as opaque, never decoded. Nothing is taken off the queue. With --output json,
one JSON object per message per line.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if queue == "" {
				return errors.New("--queue is required")
			}
			rdb, t, _, err := a.broker(cmd, f)
			if err != nil {
				return err
			}
			defer rdb.Close()
			total, err := t.Len(cmd.Context(), queue)
			if err != nil {
				return err
			}
			msgs, err := t.Peek(cmd.Context(), queue, limit)
			if err != nil {
				return err
			}
			views := make([]messageView, len(msgs))
			for i, m := range msgs {
				views[i] = viewMessage(queue, m.Step, m.Raw)
			}
			if a.json() {
				return jsonLines(a.stdout, views)
			}
			fmt.Fprintf(a.stdout, "Queue %s: %d waiting, showing %d in consume order\n", queue, total, len(views))
			for i, v := range views {
				printMessage(a.stdout, i+1, v)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&queue, "queue", "q", "", "the queue to look at")
	cmd.Flags().IntVar(&limit, "limit", 20, "at most this many messages")
	return cmd
}

func printMessage(w io.Writer, n int, v messageView) {
	if v.Error != "" {
		fmt.Fprintf(w, "\n%d. [list %d] undecodable (%d bytes): %s\n", n, v.PriorityList, v.Bytes, v.Error)
		return
	}
	fmt.Fprintf(w, "\n%d. %s[%s]  protocol %d  %s  priority %d  list %d\n", n, v.Task, v.ID, v.Protocol, v.ContentType, v.Priority, v.PriorityList)
	if v.Opaque {
		fmt.Fprintf(w, "   arguments: opaque %s body, not decoded (%d bytes)\n", v.ContentType, v.Bytes)
	} else {
		fmt.Fprintf(w, "   args %s  kwargs %s\n", v.Args, v.Kwargs)
	}
	var extra []string
	if v.ETA != nil {
		extra = append(extra, "eta "+v.ETA.UTC().Format(time.RFC3339Nano))
	}
	if v.Expires != nil {
		extra = append(extra, "expires "+v.Expires.UTC().Format(time.RFC3339Nano))
	}
	if v.Retries > 0 {
		extra = append(extra, "retries "+strconv.Itoa(v.Retries))
	}
	for _, id := range []struct{ k, v string }{{"parent", v.ParentID}, {"root", v.RootID}, {"group", v.GroupID}} {
		if id.v != "" && !(id.k == "root" && id.v == v.ID) {
			extra = append(extra, id.k+" "+id.v)
		}
	}
	if len(extra) > 0 {
		fmt.Fprintf(w, "   %s\n", strings.Join(extra, "  "))
	}
}

// parseWhen reads an absolute time (ISO-8601) or a duration from now
// ("90s", "10m", or plain seconds).
func parseWhen(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(d), nil
	}
	if secs, err := strconv.ParseFloat(s, 64); err == nil {
		return now.Add(time.Duration(secs * float64(time.Second))), nil
	}
	if t, err := core.ParseTime(s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is neither a time (2026-11-23T18:00:00+00:00) nor a duration (90s, 10m)", s)
}

func (a *app) celerySendCmd(f *celeryFlags) *cobra.Command {
	var (
		argsJSON, kwargsJSON, queue, etaS, expiresS string
		countdown                                   time.Duration
		priority, protocol                          int
		wait                                        time.Duration
	)
	cmd := &cobra.Command{
		Use:   "send TASK",
		Short: "Publish a task as apply_async would, print its id, optionally wait for its result",
		Long: `Publishes TASK with the given arguments exactly as Celery 5.2.6's apply_async
does (protocol 2 by default, 1 for estates pinned to task_protocol=1), prints the
task id, and with --wait waits for the result (the command fails if the task does).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, argv []string) error {
			var args []any
			var kwargs map[string]any
			if argsJSON != "" {
				v, err := celerybridge.DecodeValue([]byte(argsJSON))
				list, ok := v.([]any)
				if err != nil || !ok {
					return fmt.Errorf("--args must be a JSON array, as Celery's args: %s", argsJSON)
				}
				args = list
			}
			if kwargsJSON != "" {
				v, err := celerybridge.DecodeValue([]byte(kwargsJSON))
				obj, ok := v.(map[string]any)
				if err != nil || !ok {
					return fmt.Errorf("--kwargs must be a JSON object, as Celery's kwargs: %s", kwargsJSON)
				}
				kwargs = obj
			}
			now := time.Now()
			opts := celerybridge.TaskOptions{Queue: queue, Priority: priority, Countdown: countdown, Now: now}
			if etaS != "" {
				if countdown != 0 {
					return errors.New("--countdown and --eta exclude each other")
				}
				t, err := parseWhen(etaS, now)
				if err != nil {
					return fmt.Errorf("--eta: %w", err)
				}
				opts.ETA = t
			}
			if expiresS != "" {
				t, err := parseWhen(expiresS, now)
				if err != nil {
					return fmt.Errorf("--expires: %w", err)
				}
				opts.Expires = t
			}
			var raw []byte
			var id string
			switch protocol {
			case 2:
				m, err := celerybridge.NewTaskMessage(argv[0], args, kwargs, opts)
				if err != nil {
					return err
				}
				if raw, err = m.Encode(); err != nil {
					return err
				}
				id = m.Headers.ID
			case 1:
				m, err := celerybridge.NewTaskMessageV1(argv[0], args, kwargs, opts)
				if err != nil {
					return err
				}
				if raw, err = m.Encode(); err != nil {
					return err
				}
				id = m.Body.ID
			default:
				return fmt.Errorf("--protocol %d: use 1 or 2", protocol)
			}
			rdb, t, results, err := a.broker(cmd, f)
			if err != nil {
				return err
			}
			defer rdb.Close()
			if err := t.Publish(cmd.Context(), "", queue, raw); err != nil {
				return err
			}
			if wait <= 0 {
				return a.emit(map[string]string{"id": id, "queue": queue}, func(w io.Writer) { fmt.Fprintln(w, id) })
			}
			res, err := results.Wait(cmd.Context(), id, wait)
			if err != nil {
				return fmt.Errorf("task %s sent to %s: %w", id, queue, err)
			}
			if err := a.emitTaskResult(res); err != nil {
				return err
			}
			if res.State != celerybridge.StateSuccess {
				return fmt.Errorf("task %s ended %s", id, res.State)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&argsJSON, "args", "", `positional arguments as a JSON array, e.g. '["imp-1", 42]'`)
	fl.StringVar(&kwargsJSON, "kwargs", "", `keyword arguments as a JSON object, e.g. '{"documents": ["a"]}'`)
	fl.StringVarP(&queue, "queue", "q", "celery", "queue (routing key on the default exchange)")
	fl.IntVar(&priority, "priority", 0, "message priority 0..9 (Redis serves lower numbers first)")
	fl.DurationVar(&countdown, "countdown", 0, "run no earlier than this long from now")
	fl.StringVar(&etaS, "eta", "", "run no earlier than this time (ISO-8601) or duration from now")
	fl.StringVar(&expiresS, "expires", "", "revoke if not started by this time (ISO-8601) or duration from now")
	fl.IntVar(&protocol, "protocol", 2, "task protocol: 2, or 1 for task_protocol=1 estates")
	fl.DurationVar(&wait, "wait", 0, "wait this long for the result and print it")
	return cmd
}

// resultView is a task result as printed.
type resultView struct {
	TaskID    string          `json:"task_id"`
	State     string          `json:"state"`
	Result    json.RawMessage `json:"result"`
	Exception string          `json:"exception,omitempty"`
	Traceback string          `json:"traceback,omitempty"`
	DateDone  *time.Time      `json:"date_done"`
	Worker    string          `json:"worker,omitempty"`
}

func (a *app) emitTaskResult(res *celerybridge.TaskResult) error {
	v := resultView{TaskID: res.TaskID, State: string(res.State), Result: res.Result, Traceback: res.Traceback}
	if len(v.Result) == 0 {
		v.Result = json.RawMessage("null")
	}
	if res.Exception != nil {
		v.Exception = res.Exception.String()
	}
	if !res.DateDone.IsZero() {
		d := res.DateDone.UTC()
		v.DateDone = &d
	}
	if res.Extended != nil {
		v.Worker = res.Extended.Worker
	}
	return a.emit(v, func(w io.Writer) {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "task\t%s\nstate\t%s\n", v.TaskID, v.State)
		if v.Exception != "" {
			fmt.Fprintf(tw, "exception\t%s\n", v.Exception)
		} else if res.State != celerybridge.StatePending {
			var pretty bytes.Buffer
			if json.Indent(&pretty, v.Result, "", "  ") != nil {
				pretty.Reset()
				pretty.Write(v.Result)
			}
			fmt.Fprintf(tw, "result\t%s\n", pretty.String())
		}
		if v.DateDone != nil {
			fmt.Fprintf(tw, "done\t%s\n", v.DateDone.Format(time.RFC3339Nano))
		}
		if v.Worker != "" {
			fmt.Fprintf(tw, "worker\t%s\n", v.Worker)
		}
		tw.Flush()
		if v.Traceback != "" {
			fmt.Fprintf(w, "\n%s\n", strings.TrimRight(v.Traceback, "\n"))
		}
	})
}

func (a *app) celeryResultCmd(f *celeryFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "result TASK_ID",
		Short: "Print a task's state and result (PENDING when none is stored)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, argv []string) error {
			rdb, _, results, err := a.broker(cmd, f)
			if err != nil {
				return err
			}
			defer rdb.Close()
			res, err := results.Get(cmd.Context(), argv[0])
			if err != nil {
				return err
			}
			return a.emitTaskResult(res)
		},
	}
}

type unackedView struct {
	Tag        string  `json:"tag"`
	AgeSeconds float64 `json:"age_seconds"`
	Overdue    bool    `json:"past_visibility_timeout"`
	Queue      string  `json:"queue"`
	Task       string  `json:"task,omitempty"`
	ID         string  `json:"id,omitempty"`
	Error      string  `json:"error,omitempty"`
}

func (a *app) celeryUnackedCmd(f *celeryFlags) *cobra.Command {
	var restore bool
	cmd := &cobra.Command{
		Use:   "unacked",
		Short: "List claimed but unacked messages with their age; --restore puts back the overdue ones",
		Long: `Lists kombu's unacked records (messages a consumer took and has not acknowledged),
oldest first, with their age against --visibility-timeout. With --restore, those
past it are put back at the front of their queues under kombu's unacked_mutex, as
a Celery consumer would do at its next scan; a consumer still working on one of
them (slower than the timeout) would then see it run twice.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rdb, t, _, err := a.broker(cmd, f)
			if err != nil {
				return err
			}
			defer rdb.Close()
			if restore {
				n, err := t.RestoreVisible(cmd.Context())
				if err != nil {
					return err
				}
				return a.emit(map[string]int{"restored": n}, func(w io.Writer) {
					fmt.Fprintf(w, "Restored %d message%s past the %s visibility timeout.\n", n, plural(n), f.visibility)
				})
			}
			list, err := t.Unacked(cmd.Context())
			if err != nil {
				return err
			}
			views := make([]unackedView, len(list))
			for i, u := range list {
				v := unackedView{Tag: u.Tag, AgeSeconds: u.Age.Seconds(), Overdue: u.Age > f.visibility, Queue: u.Queue}
				if env, err := celerybridge.DecodeEnvelope(u.Raw); err == nil {
					if task, err := env.Task(); err == nil {
						v.Task, v.ID = task.Name, task.ID
					}
				} else if u.Queue == "" {
					v.Error = "unreadable record"
				}
				views[i] = v
			}
			if a.json() {
				return jsonLines(a.stdout, views)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "AGE\tQUEUE\tTASK\tID\tTAG")
			overdue := 0
			for _, v := range views {
				age := (time.Duration(v.AgeSeconds * float64(time.Second))).Round(time.Second).String()
				if v.Overdue {
					age += " (overdue)"
					overdue++
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", age, v.Queue, v.Task, v.ID, v.Tag)
			}
			tw.Flush()
			fmt.Fprintf(a.stdout, "%d unacked, %d past the %s visibility timeout", len(views), overdue, f.visibility)
			if overdue > 0 {
				fmt.Fprint(a.stdout, " (restore them with --restore)")
			}
			fmt.Fprintln(a.stdout)
			return nil
		},
	}
	cmd.Flags().BoolVar(&restore, "restore", false, "put back the messages past the visibility timeout")
	return cmd
}
