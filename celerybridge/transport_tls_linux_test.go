package celerybridge

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// rediss:// against a real TLS redis-server whose certificate names
// "localhost" only, reached at 127.0.0.1: the CA from ssl_ca_certs is
// required, the hostname is checked unless ssl_check_hostname=false, and
// ssl_cert_reqs=none skips verification as Celery's does.
func TestParseBrokerURLTLS(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a TLS redis-server")
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	dir := t.TempDir()
	caFile, certFile, keyFile := trWriteCerts(t, dir)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "--port", "0", "--bind", "127.0.0.1", "--tls-port", fmt.Sprint(port),
		"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-cert-file", caFile,
		"--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	ping := func(url string) error {
		o, err := ParseBrokerURL(url)
		if err != nil {
			return err
		}
		o.MaxRetries = -1
		c := redis.NewClient(o)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return c.Ping(ctx).Err()
	}
	base := fmt.Sprintf("rediss://127.0.0.1:%d/0", port)
	deadline := time.Now().Add(5 * time.Second)
	for ping(base+"?ssl_cert_reqs=none") != nil {
		if time.Now().After(deadline) {
			t.Fatal("TLS redis-server did not come up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, c := range []struct {
		query string
		ok    bool
	}{
		{"?ssl_cert_reqs=none", true},
		{"?ssl_cert_reqs=required", false},                                                     // unknown authority
		{"?ssl_cert_reqs=required&ssl_ca_certs=" + caFile, false},                              // 127.0.0.1 is not localhost
		{"?ssl_cert_reqs=required&ssl_ca_certs=" + caFile + "&ssl_check_hostname=false", true}, // redis-py 4.3's default
		{"?ssl_cert_reqs=CERT_REQUIRED&ssl_check_hostname=false", false},                       // the chain is still checked
	} {
		if err := ping(base + c.query); (err == nil) != c.ok {
			t.Errorf("%s: ping: %v", c.query, err)
		}
	}
	local := fmt.Sprintf("rediss://localhost:%d/0?ssl_ca_certs=%s", port, caFile)
	if err := ping(local); err != nil {
		t.Errorf("localhost with the CA: %v", err)
	}
}

// trWriteCerts writes a CA and a server certificate for "localhost" only.
func trWriteCerts(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey, srvKey := key(), key()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "spine test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", srvDER), write("server.key", "EC PRIVATE KEY", keyDER)
}
