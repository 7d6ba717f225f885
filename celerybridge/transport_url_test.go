package celerybridge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/spinecore/spine-go/internal/testsvc"
)

func TestParseBrokerURL(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		url                 string
		network, addr, user string
		password            string
		db                  int
		tls, insecure       bool
	}{
		{url: "redis://localhost:6379/3", network: "tcp", addr: "localhost:6379", db: 3},
		{url: "redis://h", network: "tcp", addr: "h:6379"},
		{url: "redis://:s3cret@h/0", network: "tcp", addr: "h:6379", password: "s3cret"},
		{url: "redis://spine:p%40ss@h:6380/1", network: "tcp", addr: "h:6380", user: "spine", password: "p@ss", db: 1},
		{url: "redis://h/2?protocol=2&dial_timeout=2s", network: "tcp", addr: "h:6379", db: 2},
		{url: "rediss://:pw@h:6380/2?ssl_cert_reqs=required", network: "tcp", addr: "h:6380", password: "pw", db: 2, tls: true},
		{url: "rediss://h?ssl_cert_reqs=CERT_OPTIONAL", network: "tcp", addr: "h:6379", tls: true},
		{url: "rediss://h", network: "tcp", addr: "h:6379", tls: true}, // kombu would not verify; we do
		{url: "rediss://h?ssl_cert_reqs=none", network: "tcp", addr: "h:6379", tls: true, insecure: true},
		{url: "rediss://h?ssl_cert_reqs=CERT_NONE", network: "tcp", addr: "h:6379", tls: true, insecure: true},
		{url: "redis+socket:///var/run/redis.sock?virtual_host=4", network: "unix", addr: "/var/run/redis.sock", db: 4},
		{url: "socket:///tmp/r.sock", network: "unix", addr: "/tmp/r.sock"},
		{url: "redis+socket://:pw@/tmp/r.sock", network: "unix", addr: "/tmp/r.sock", password: "pw"},
		{url: "unix:///tmp/r.sock?db=2", network: "unix", addr: "/tmp/r.sock", db: 2},
	} {
		o, err := ParseBrokerURL(c.url)
		if err != nil {
			t.Errorf("%s: %v", c.url, err)
			continue
		}
		if o.Network != c.network || o.Addr != c.addr || o.Username != c.user || o.Password != c.password || o.DB != c.db ||
			(o.TLSConfig != nil) != c.tls || c.tls && o.TLSConfig.InsecureSkipVerify != c.insecure {
			t.Errorf("%s: %s %s user %q password %q db %d tls %v", c.url, o.Network, o.Addr, o.Username, o.Password, o.DB, o.TLSConfig)
		}
		if c.tls && !c.insecure && o.TLSConfig.ServerName != "h" {
			t.Errorf("%s: ServerName %q", c.url, o.TLSConfig.ServerName)
		}
	}
	for _, bad := range []string{
		"amqp://guest:s3cret@localhost//",
		"redis://:s3cret@h/notanumber",
		"redis://:s3cret@h:99999999999999/0",
		"redis://user:s3cret@h%zz/0",
		"redis://:s3cret@h/0?ssl_cert_reqs=none",
		"rediss://:s3cret@h/0?ssl_cert_reqs=sometimes",
		"rediss://:s3cret@h/0?ssl_ca_certs=/no/such/file.pem",
		"redis://:s3cret@h/0?no_such_option=1",
		"redis+socket://:s3cret@host/tmp/r.sock",
		"socket://:s3cret@",
		"s3cret",
	} {
		o, err := ParseBrokerURL(bad)
		if err == nil {
			t.Errorf("%s: parsed as %+v", bad, o)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: the error shows the password: %v", bad, err)
		}
	}
}

// AUTH with an ACL user from the URL, against the test server.
func TestParseBrokerURLAuthenticates(t *testing.T) {
	t.Parallel()
	base := testsvc.NewRedisDB(t)
	admin := redis.NewClient(trMust(ParseBrokerURL(base)))
	defer admin.Close()
	ctx := context.Background()
	var b [8]byte
	_, _ = rand.Read(b[:])
	user, pw := "spine-"+hex.EncodeToString(b[:4]), "pw-"+hex.EncodeToString(b[4:])
	if err := admin.Do(ctx, "ACL", "SETUSER", user, "on", ">"+pw, "~*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	defer admin.Do(ctx, "ACL", "DELUSER", user)
	withUser := strings.Replace(base, "redis://", fmt.Sprintf("redis://%s:%s@", user, pw), 1)
	c := redis.NewClient(trMust(ParseBrokerURL(withUser)))
	defer c.Close()
	if who, err := c.Do(ctx, "ACL", "WHOAMI").Text(); err != nil || who != user {
		t.Fatalf("ACL WHOAMI = %q, %v", who, err)
	}
	wrong := redis.NewClient(trMust(ParseBrokerURL(strings.Replace(withUser, pw, "nope", 1))))
	defer wrong.Close()
	if err := wrong.Ping(ctx).Err(); err == nil || strings.Contains(err.Error(), pw) {
		t.Fatalf("wrong password: %v", err)
	}
}
