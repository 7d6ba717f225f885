package celerybridge

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// ParseBrokerURL reads a Celery broker_url for Redis into go-redis options:
//
//	redis://[[user]:password@]host[:port][/db]
//	rediss://...?ssl_cert_reqs=required|optional|none   (also CERT_REQUIRED, ...)
//	          &ssl_ca_certs=/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem
//	          &ssl_check_hostname=false
//	redis+socket:///path/redis.sock?virtual_host=3      (also socket://, unix://)
//
// Other query parameters are go-redis's (protocol, dial_timeout, ...). TLS
// differs from kombu on purpose: kombu falls back to CERT_NONE when rediss://
// has no ssl_cert_reqs, and redis-py 4.3 skips the hostname check; here the
// certificate and the hostname are verified unless ssl_cert_reqs=none or
// ssl_check_hostname=false says otherwise. ssl_* parameters on redis:// are
// refused, as Celery's own Redis backend refuses them.
//
// Errors never contain the URL's password.
func ParseBrokerURL(brokerURL string) (*redis.Options, error) {
	opts, err := parseBrokerURL(brokerURL)
	if err != nil {
		msg := err.Error()
		if u, perr := url.Parse(brokerURL); perr == nil && u.User != nil {
			if pw, ok := u.User.Password(); ok && pw != "" {
				msg = strings.ReplaceAll(msg, pw, "***")
			}
		}
		if _, rest, ok := strings.Cut(brokerURL, "://"); ok {
			if at := strings.LastIndex(rest, "@"); at > 0 {
				msg = strings.ReplaceAll(msg, rest[:at], "***")
			}
		}
		return nil, errors.New("celerybridge: broker URL: " + msg)
	}
	return opts, nil
}

func parseBrokerURL(brokerURL string) (*redis.Options, error) {
	scheme, rest, ok := strings.Cut(brokerURL, "://")
	if !ok {
		return nil, errors.New("not a URL (no scheme://)")
	}
	scheme = strings.ToLower(scheme)
	unix := false
	switch scheme {
	case "redis", "rediss":
	case "redis+socket", "socket", "unix":
		unix = true
	default:
		return nil, fmt.Errorf("scheme %q is not a Redis broker (redis, rediss, redis+socket, socket, unix)", scheme)
	}
	u, err := url.Parse("redis://" + rest)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, err
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("port %q is not 1..65535", p)
		}
	}
	q := u.Query()
	take := func(name string) string {
		v := q.Get(name)
		q.Del(name)
		return v
	}
	certReqs, caCerts := take("ssl_cert_reqs"), take("ssl_ca_certs")
	certFile, keyFile := take("ssl_certfile"), take("ssl_keyfile")
	checkHostname := take("ssl_check_hostname")
	if vh := take("virtual_host"); vh != "" {
		vh = strings.TrimPrefix(vh, "/")
		if _, err := strconv.Atoi(vh); err != nil {
			return nil, fmt.Errorf("virtual_host %q is not a database number", vh)
		}
		if q.Get("db") == "" {
			q.Set("db", vh)
		}
	}
	hasSSL := certReqs != "" || caCerts != "" || certFile != "" || keyFile != "" || checkHostname != ""
	if hasSSL && scheme != "rediss" {
		return nil, fmt.Errorf("ssl_* parameters need the rediss:// scheme, not %s://", scheme)
	}

	target := url.URL{Scheme: "redis", User: u.User, Host: u.Host, Path: u.Path, RawQuery: q.Encode()}
	if scheme == "rediss" {
		target.Scheme = "rediss"
	}
	if unix {
		if u.Path == "" || u.Path == "/" {
			return nil, errors.New("socket URL without a socket path")
		}
		if u.Host != "" {
			return nil, fmt.Errorf("socket URL names host %q; write redis+socket:///path/to.sock", u.Host)
		}
		target.Scheme = "unix"
	}
	opts, err := redis.ParseURL(target.String())
	if err != nil {
		return nil, err
	}
	if scheme != "rediss" {
		return opts, nil
	}

	cfg := opts.TLSConfig
	switch certReqs {
	case "", "required", "CERT_REQUIRED", "optional", "CERT_OPTIONAL":
		// A client verifies the server either way: Python's CERT_OPTIONAL
		// means CERT_REQUIRED on the client side.
	case "none", "CERT_NONE":
		cfg.InsecureSkipVerify = true
	default:
		return nil, fmt.Errorf("ssl_cert_reqs %q is not required, optional or none", certReqs)
	}
	if caCerts != "" {
		pem, err := os.ReadFile(caCerts)
		if err != nil {
			return nil, fmt.Errorf("ssl_ca_certs: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ssl_ca_certs %q holds no PEM certificate", caCerts)
		}
		cfg.RootCAs = pool
	}
	if certFile != "" || keyFile != "" {
		if keyFile == "" {
			keyFile = certFile // Python's load_cert_chain reads the key from the cert file
		}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("ssl_certfile/ssl_keyfile: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if checkHostname != "" && !cfg.InsecureSkipVerify {
		check, err := strconv.ParseBool(checkHostname)
		if err != nil {
			return nil, fmt.Errorf("ssl_check_hostname %q is not a boolean", checkHostname)
		}
		if !check {
			// Verify the chain, not the name: InsecureSkipVerify turns off
			// Go's check, VerifyConnection puts the chain check back.
			roots := cfg.RootCAs
			cfg.InsecureSkipVerify = true
			cfg.VerifyConnection = func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return errors.New("celerybridge: server sent no certificate")
				}
				inter := x509.NewCertPool()
				for _, c := range cs.PeerCertificates[1:] {
					inter.AddCert(c)
				}
				_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
				return err
			}
		}
	}
	return opts, nil
}
