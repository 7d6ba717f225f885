package redact

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"postgres://app:s3cr3t@db.internal:5432/capture?sslmode=require": "postgres://app:xxxxx@db.internal:5432/capture?sslmode=require",
		"postgres://app@db/capture":                                      "postgres://app@db/capture",
		"redis://:hunter2@cache:6379/0":                                  "redis://:xxxxx@cache:6379/0",
		"redis://hunter2@cache:6379/0":                                   "redis://xxxxx@cache:6379/0",
		"rediss://user:p%40ss@cache:6380/1":                              "rediss://user:xxxxx@cache:6380/1",
		"postgres://db/x?password=leaky&user=u":                          "postgres://db/x?password=xxxxx&user=u",
		"host=db user=app password=s3cr3t dbname=x":                      "host=db user=app password=xxxxx dbname=x",
		"host=db password='with space' dbname=x":                         "host=db password=xxxxx dbname=x",
	}
	for in, want := range cases {
		if got := URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestScrubberCoversErrorsAndLogs(t *testing.T) {
	t.Parallel()
	var s Scrubber
	s.AddURL("postgres://app:s3cr3t-pw@db/capture")
	s.AddURL("redis://:r3dis-pw@cache/0")
	s.AddURL("host=db password='kv pass' dbname=x")
	s.AddURL("postgres://app:unparsed-pw@[::1")
	msg := s.Scrub("dial postgres://app:s3cr3t-pw@db failed; redis auth r3dis-pw refused; kv pass; unparsed-pw")
	for _, secret := range []string{"s3cr3t-pw", "r3dis-pw", "kv pass", "unparsed-pw"} {
		if strings.Contains(msg, secret) {
			t.Errorf("%q survived in %q", secret, msg)
		}
	}
	var buf bytes.Buffer
	log := slog.New(s.Handler(slog.NewTextHandler(&buf, nil))).With("dsn", "postgres://app:s3cr3t-pw@db")
	log.Info("connecting with s3cr3t-pw", "err", errors.New("auth r3dis-pw"), slog.Group("g", "url", "redis://:r3dis-pw@x"))
	if out := buf.String(); strings.Contains(out, "s3cr3t-pw") || strings.Contains(out, "r3dis-pw") || !strings.Contains(out, "xxxxx") {
		t.Errorf("log line leaks or lacks masking: %s", out)
	}
}
