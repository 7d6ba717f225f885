package celerybridge

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spinecore/spine-go/internal/testsvc"
)

func addTransportSeeds(f *testing.F) {
	for _, c := range trClaimRuleCases(f) {
		f.Add(c.raw)
	}
	for _, fx := range loadFixtures(f) {
		f.Add(fx.raw)
	}
}

// FuzzUnackedRecord: the record parser never panics, and what it reads
// written back as claim.lua writes it reads the same.
func FuzzUnackedRecord(f *testing.F) {
	f.Add([]byte(`[{"a": 1}, "", "celery"]`))
	f.Add([]byte(`[ {} , null , "q\u00e9" ]`))
	f.Add([]byte(`[{}, "x", "rk", 1]`))
	for _, c := range trClaimRuleCases(f) {
		f.Add(kombuUnackedRecord(c.raw, "", "q"))
	}
	f.Fuzz(func(t *testing.T, rec []byte) {
		env, ex, rk, err := parseUnackedRecord(rec)
		if err != nil {
			if !errors.Is(err, ErrMalformedJSON) {
				t.Fatalf("error outside ErrMalformedJSON: %v", err)
			}
			return
		}
		if validJSON(env) != nil {
			t.Fatalf("envelope %q is not one JSON value", env)
		}
		env2, ex2, rk2, err := parseUnackedRecord(kombuUnackedRecord(env, ex, rk))
		if err != nil || !bytes.Equal(env, env2) || ex != ex2 || rk != rk2 {
			t.Fatalf("rewritten record reads %q %q %q, %v; was %q %q %q", env2, ex2, rk2, err, env, ex, rk)
		}
	})
}

// FuzzDeadLetterRecord: the dead-letter parser never panics, and a record
// it reads round-trips through appendDeadLetter.
func FuzzDeadLetterRecord(f *testing.F) {
	f.Add([]byte(`{"reason": "malformed_json", "queue": "q", "raw": "{", "at": 1700000000.000001}`))
	f.Add([]byte(`{"reason": "x", "queue": "q", "raw": "gAQ=", "encoding": "base64", "at": 1.5e9}`))
	f.Add([]byte(`{"raw": "", "extra": [1, {"a": null}]}`))
	f.Fuzz(func(t *testing.T, rec []byte) {
		d, err := parseDeadLetter(rec)
		if err != nil {
			return
		}
		d.At = d.At.Truncate(time.Microsecond)
		again, err := parseDeadLetter(appendDeadLetter(nil, d))
		if err != nil || again.Reason != d.Reason || again.Queue != d.Queue || !bytes.Equal(again.Raw, d.Raw) || !again.At.Equal(d.At) {
			t.Fatalf("round trip of %+v: %+v, %v", d, again, err)
		}
	})
}

// FuzzRestoredEnvelope: what kombu's restore would write is valid JSON in
// Python's layout, keeps the claim facts (plus the redelivered mark), and
// restoring twice writes the same bytes.
func FuzzRestoredEnvelope(f *testing.F) {
	addTransportSeeds(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		out, _, err := restoredEnvelope(raw)
		if err != nil {
			return
		}
		if validJSON(out) != nil || !trPythonLayout(out) {
			t.Fatalf("restored envelope not in Python's layout: %q", out)
		}
		again, _, err := restoredEnvelope(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("restoring twice differs:\n%q\n%q (%v)", out, again, err)
		}
		before, fault := claimCheck(raw)
		after, fault2 := claimCheck(out)
		if fault == "" && fault2 == "" {
			before.redelivered, after.redelivered = false, false
			if before != after {
				t.Fatalf("facts changed: %+v -> %+v", before, after)
			}
		}
	})
}

// FuzzClaimRule holds claim.lua to claimCheck: the same messages claimed,
// with the same tag and record, the rest dead-lettered for the same reason
// and with the same bytes. It runs against real Redis.
func FuzzClaimRule(f *testing.F) {
	addTransportSeeds(f)
	url := testsvc.NewRedisDB(f)
	rdb := redis.NewClient(trMust(ParseBrokerURL(url)))
	f.Cleanup(func() { rdb.Close() })
	tr := NewTransport(rdb, TransportOptions{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		ctx := t.Context()
		if err := rdb.FlushDB(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.LPush(ctx, "q", raw).Err(); err != nil {
			t.Fatal(err)
		}
		facts, fault := claimCheck(raw)
		d, err := tr.Claim(ctx, []string{"q"}, 0)
		if fault == "" {
			if err != nil {
				t.Fatalf("claim.lua refuses what claimCheck accepts (%v): %q", err, raw)
			}
			if d.Tag != facts.tag || d.Exchange != facts.exchange || d.RoutingKey != facts.routingKey || !bytes.Equal(d.Raw, raw) {
				t.Fatalf("delivery %+v, facts %+v", d, facts)
			}
			rec := trMust(rdb.HGet(ctx, "unacked", d.Tag).Result())
			env, ex, rk, err := parseUnackedRecord([]byte(rec))
			if err != nil || !bytes.Equal(env, bytes.Trim(raw, " \t\r\n")) || ex != facts.exchange || rk != facts.routingKey {
				t.Fatalf("record %q: %v", rec, err)
			}
			return
		}
		var dl *DeadLetter
		if !errors.As(err, &dl) {
			t.Fatalf("claim.lua accepts what claimCheck refuses (%s): %q", fault, raw)
		}
		same := dl.Reason == fault || (dl.Reason == faultMalformed || dl.Reason == faultTooDeep) && (fault == faultMalformed || fault == faultTooDeep)
		if !same || !bytes.Equal(dl.Raw, raw) {
			t.Fatalf("dead letter %q, claimCheck %q, raw kept %v", dl.Reason, fault, bytes.Equal(dl.Raw, raw))
		}
		stored := trMust(tr.DeadLetters(ctx, 0))
		if len(stored) != 1 || !bytes.Equal(stored[0].Raw, raw) || stored[0].Reason != dl.Reason {
			t.Fatalf("dead-letter list %+v", stored)
		}
	})
}

// FuzzClaimBatchRule holds the batch claim to claimCheck, and so to
// claim.lua: two copies of the message around a good one, taken in one
// batch, are claimed with the facts claimCheck reads (the second copy under
// its own field) or dead-lettered for its reason with their bytes kept. It
// runs against real Redis.
func FuzzClaimBatchRule(f *testing.F) {
	addTransportSeeds(f)
	url := testsvc.NewRedisDB(f)
	rdb := redis.NewClient(trMust(ParseBrokerURL(url)))
	f.Cleanup(func() { rdb.Close() })
	tr := NewTransport(rdb, TransportOptions{})
	good := trMessage(f, "q", 0, "good")
	f.Fuzz(func(t *testing.T, raw []byte) {
		ctx := t.Context()
		if err := rdb.FlushDB(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.LPush(ctx, "q", raw, good, raw).Err(); err != nil {
			t.Fatal(err)
		}
		facts, fault := claimCheck(raw)
		ds, dls, err := tr.ClaimBatch(ctx, []string{"q"}, 3, 0)
		if err != nil {
			t.Fatal(err)
		}
		var mine []*Delivery
		for _, d := range ds {
			if bytes.Equal(d.Raw, good) && !bytes.Equal(raw, good) {
				continue
			}
			mine = append(mine, d)
		}
		if fault == "" {
			if len(mine) != 2 || len(dls) != 0 {
				t.Fatalf("claimCheck accepts, batch claimed %d copies and dead-lettered %d: %q", len(mine), len(dls), raw)
			}
			for i, d := range mine {
				field := facts.tag
				if i == 1 {
					field += tr.sep + "1"
				}
				if d.Tag != field || d.Exchange != facts.exchange || d.RoutingKey != facts.routingKey || d.Priority != facts.priority || !bytes.Equal(d.Raw, raw) {
					t.Fatalf("delivery %+v, facts %+v", d, facts)
				}
				rec := trMust(rdb.HGet(ctx, "unacked", d.Tag).Result())
				env, ex, rk, err := parseUnackedRecord([]byte(rec))
				if err != nil || !bytes.Equal(env, bytes.Trim(raw, " \t\r\n")) || ex != facts.exchange || rk != facts.routingKey {
					t.Fatalf("record %q: %v", rec, err)
				}
			}
			return
		}
		if len(dls) != 2 || len(mine) != 0 {
			t.Fatalf("claimCheck refuses (%s), batch claimed %d and dead-lettered %d: %q", fault, len(mine), len(dls), raw)
		}
		stored := trMust(tr.DeadLetters(ctx, 0))
		if len(stored) != 2 {
			t.Fatalf("dead-letter list %+v", stored)
		}
		for i, dl := range dls {
			if dl.Reason != fault || !bytes.Equal(dl.Raw, raw) || stored[i].Reason != fault || !bytes.Equal(stored[i].Raw, raw) || !stored[i].At.Equal(dl.At) {
				t.Fatalf("dead letter %+v, stored %+v, claimCheck %q", dl, stored[i], fault)
			}
		}
	})
}

// claimCheckWhole is the claim rule read off the whole parsed envelope: the
// reference the reduced reading of claimCheck is held to.
func claimCheckWhole(raw []byte) (claimFacts, string) {
	if nestedDeeperThan(raw, maxClaimDepth) {
		return claimFacts{}, faultTooDeep
	}
	root, err := parseNode(raw, false)
	if err != nil {
		return claimFacts{}, faultMalformed
	}
	return nodeFacts(&root)
}

// FuzzClaimCheckReduced: claimCheck, which builds nodes only for the members
// the rule reads, judges every input exactly as the rule over the whole
// parsed envelope does.
func FuzzClaimCheckReduced(f *testing.F) {
	addTransportSeeds(f)
	f.Add([]byte(`{"headers": {"redelivered": true}, "headers": [], "properties": {"delivery_tag": "t", "delivery_info": {"exchange": "", "routing_key": "q"}}}`))
	f.Add([]byte(`{"headers": 1, "headers": {"redelivered": false, "redelivered": true}, "properties": {"priority": 3, "delivery_tag": "a", "delivery_tag": "b", "delivery_info": {"exchange": "x", "routing_key": "q", "redelivered": true}, "priority": "7"}}`))
	f.Add([]byte(`{"properties": {"delivery_tag": "t", "delivery_info": {"exchange": "", "routing_key": "q"}}, "properties": null}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, gotFault := claimCheck(raw)
		want, wantFault := claimCheckWhole(raw)
		if got != want || gotFault != wantFault {
			t.Fatalf("claimCheck = %+v %q, the whole envelope's rule = %+v %q: %q", got, gotFault, want, wantFault, raw)
		}
	})
}

// FuzzEnvelopeFacts: whenever the claim facts are read from a decoded
// envelope instead of by claimCheck, they are claimCheck's facts.
func FuzzEnvelopeFacts(f *testing.F) {
	addTransportSeeds(f)
	f.Add([]byte(`{"headers": {"redelivered": true}, "properties": {"priority": 12, "delivery_tag": "t", "delivery_info": {"exchange": "", "routing_key": "q", "redelivered": false}}}`))
	f.Add([]byte(`{"properties": {"priority": -3, "delivery_tag": "t", "delivery_info": {"exchange": "x", "routing_key": ""}}, "properties": {"delivery_tag": "u", "delivery_info": {"exchange": "", "routing_key": "q"}}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var env Envelope
		if decodeEnvelope(raw, &env) != nil || nestedDeeperThan(raw, maxClaimDepth) {
			return
		}
		got, ok := envelopeFacts(&env)
		if !ok {
			return
		}
		want, fault := claimCheck(raw)
		if fault != "" || got != want {
			t.Fatalf("facts from the envelope %+v, claimCheck %+v %q: %q", got, want, fault, raw)
		}
	})
}
