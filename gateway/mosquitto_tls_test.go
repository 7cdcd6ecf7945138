package gateway_test

// The TLS listener of deploy/mosquitto/mosquitto.conf: terminals identified
// by client certificates. The PKI is generated per test run (no key is ever
// committed) and the broker runs from the deploy config itself, with only
// file paths, ports and persistence substituted, so that a change to the
// shipped config is what these tests judge.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"scenepay/gateway/internal/testkit"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

// newTestCA makes a self-signed CA valid for an hour around now.
func newTestCA(t *testing.T, cn string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue signs a leaf certificate for cn; server certificates name 127.0.0.1.
// It returns the certificate and key in PEM.
func (ca *testCA) issue(t *testing.T, serial int64, cn string, server bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// clientTLS is what a terminal presents: the broker's CA as the only root
// and, unless certPEM is nil, its own certificate.
func clientTLS(t *testing.T, brokerCA *testCA, certPEM, keyPEM []byte) *tls.Config {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(brokerCA.cert)
	c := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if certPEM != nil {
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c
}

// deployBroker is a private Mosquitto running the deploy config.
type deployBroker struct {
	URL        string  // loopback listener (gateway, anonymous terminals)
	TLSURL     string  // TLS listener (terminals with certificates)
	GWPassword string  // the gateway user's password
	CA         *testCA // signs the broker's and the terminals' certificates
}

// startDeployMosquitto runs a private Mosquitto from
// ../deploy/mosquitto/mosquitto.conf and scenepay.acl: the loopback listener
// on a free port (added by testkit), the TLS listener on another free port
// with a CA, a broker certificate for 127.0.0.1 and a generated gateway
// password, all in the test's temp dir.
func startDeployMosquitto(t *testing.T) *deployBroker {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	conf, err := os.ReadFile("../deploy/mosquitto/mosquitto.conf")
	if err != nil {
		t.Fatal(err)
	}
	acl, err := os.ReadFile("../deploy/mosquitto/scenepay.acl")
	if err != nil {
		t.Fatal(err)
	}
	b := &deployBroker{GWPassword: fmt.Sprintf("pw-%d", time.Now().UnixNano()), CA: newTestCA(t, "scenepay test terminals CA")}
	pwFile := filepath.Join(dir, "passwd")
	if out, err := exec.Command("mosquitto_passwd", "-c", "-b", pwFile, "scenepay-gateway", b.GWPassword).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v %s", err, out)
	}
	srvCert, srvKey := b.CA.issue(t, 2, "127.0.0.1", true)
	tlsPort := testkit.FreePort(t)

	c := string(conf)
	for _, r := range []struct{ old, new string }{
		{"/etc/mosquitto/scenepay.passwd", pwFile},
		{"/etc/mosquitto/scenepay.acl", write("acl", acl)},
		{"/etc/mosquitto/ca/terminals-ca.pem", write("ca.pem", b.CA.pem)},
		{"/etc/mosquitto/tls/broker.pem", write("broker.pem", srvCert)},
		{"/etc/mosquitto/tls/broker.key", write("broker.key", srvKey)},
		{"persistence true", "persistence false"},
		{"persistence_location /var/lib/mosquitto/", ""},
		{"listener 1883 127.0.0.1", ""}, // testkit appends one on a free port
		{"listener 8883", fmt.Sprintf("listener %d 127.0.0.1", tlsPort)},
	} {
		if !strings.Contains(c, r.old) {
			// The deploy config changed shape; a silent no-op would test
			// something other than what ships.
			t.Fatalf("deploy/mosquitto/mosquitto.conf no longer contains %q", r.old)
		}
		c = strings.ReplaceAll(c, r.old, r.new)
	}
	b.URL = testkit.StartMosquitto(t, c).URL()
	b.TLSURL = fmt.Sprintf("ssl://127.0.0.1:%d", tlsPort)
	waitListening(t, fmt.Sprintf("127.0.0.1:%d", tlsPort))
	return b
}

// waitListening waits until addr accepts TCP connections (Mosquitto opens
// its listeners one after another).
func waitListening(t *testing.T, addr string) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("TLS listener %s did not open", addr)
}

// dialTLS connects a terminal to the TLS listener. It returns the error of
// the connection attempt instead of failing, for the refusal cases.
func dialTLS(t *testing.T, url, clientID string, cfg *tls.Config) (paho.Client, error) {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(url).SetClientID(clientID).SetTLSConfig(cfg).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second)
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect %s: no answer", clientID)
	}
	if tok.Error() != nil {
		return nil, tok.Error()
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c, nil
}

func connectTLS(t *testing.T, url, clientID string, cfg *tls.Config) paho.Client {
	t.Helper()
	c, err := dialTLS(t, url, clientID, cfg)
	if err != nil {
		t.Fatalf("connect %s over TLS: %v", clientID, err)
	}
	return c
}

// Promise 6 over TLS: only a client with a certificate from the terminals' CA
// gets in, and the certificate (not the client id it claims) decides which
// terminal's topics it may use.
func TestMosquittoTLSClientCertificates(t *testing.T) {
	b := startDeployMosquitto(t)
	bus1Cert, bus1Key := b.CA.issue(t, 10, "BUS-1", false)
	bus2Cert, bus2Key := b.CA.issue(t, 11, "BUS-2", false)

	t.Run("refused without a certificate", func(t *testing.T) {
		if _, err := dialTLS(t, b.TLSURL, "BUS-1", clientTLS(t, b.CA, nil, nil)); err == nil {
			t.Fatal("a client without a certificate connected to the TLS listener")
		}
	})
	t.Run("refused with another CA's certificate", func(t *testing.T) {
		rogue := newTestCA(t, "not the terminals CA")
		cert, key := rogue.issue(t, 12, "BUS-1", false)
		if _, err := dialTLS(t, b.TLSURL, "BUS-1", clientTLS(t, b.CA, cert, key)); err == nil {
			t.Fatal("a certificate from another CA was accepted")
		}
	})

	// The gateway on the loopback listener, as ingress subscribes.
	gw := connect(t, b.URL, "scenepay-gw1-0", "scenepay-gateway", b.GWPassword)
	reqs := collect(t, gw, "$share/scp-gateway/scp/v1/t/+/req")

	t.Run("own topics only", func(t *testing.T) {
		bus1 := connectTLS(t, b.TLSURL, "BUS-1", clientTLS(t, b.CA, bus1Cert, bus1Key))
		bus2 := connectTLS(t, b.TLSURL, "BUS-2", clientTLS(t, b.CA, bus2Cert, bus2Key))
		resp1 := collect(t, bus1, "scp/v1/t/BUS-1/resp")
		spy := collect(t, bus1, "scp/v1/t/BUS-2/resp")
		resp2 := collect(t, bus2, "scp/v1/t/BUS-2/resp")
		cfg := collect(t, bus1, "scp/v1/g/+/cfg")

		publish(bus1, "scp/v1/t/BUS-1/req", "own")
		expect(t, reqs, "scp/v1/t/BUS-1/req own")
		publish(bus1, "scp/v1/t/BUS-2/req", "forged")
		expectNone(t, reqs)
		publish(bus2, "scp/v1/t/BUS-2/req", "own2")
		expect(t, reqs, "scp/v1/t/BUS-2/req own2")

		publish(gw, "scp/v1/t/BUS-2/resp", "r2")
		expect(t, resp2, "scp/v1/t/BUS-2/resp r2")
		expectNone(t, spy)
		publish(gw, "scp/v1/t/BUS-1/resp", "r1")
		expect(t, resp1, "scp/v1/t/BUS-1/resp r1")

		// Group configuration reaches certificate holders too (they are not
		// anonymous, so "topic" lines for anonymous clients would miss them).
		publish(gw, "scp/v1/g/bus/cfg", "c1")
		expect(t, cfg, "scp/v1/g/bus/cfg c1")
	})

	t.Run("identity from the certificate, not the client id", func(t *testing.T) {
		// BUS-1's certificate, claiming to be BUS-2.
		liar := connectTLS(t, b.TLSURL, "BUS-2", clientTLS(t, b.CA, bus1Cert, bus1Key))
		theirs := collect(t, liar, "scp/v1/t/BUS-2/resp")
		mine := collect(t, liar, "scp/v1/t/BUS-1/resp")

		publish(liar, "scp/v1/t/BUS-2/req", "forged")
		expectNone(t, reqs)
		statuses := collect(t, gw, "scp/v1/t/+/status")
		publish(liar, "scp/v1/t/BUS-2/status", "offline")
		expectNone(t, statuses)
		publish(gw, "scp/v1/t/BUS-2/resp", "r2")
		expectNone(t, theirs)

		publish(liar, "scp/v1/t/BUS-1/req", "as-bus1")
		expect(t, reqs, "scp/v1/t/BUS-1/req as-bus1")
		publish(gw, "scp/v1/t/BUS-1/resp", "r1")
		expect(t, mine, "scp/v1/t/BUS-1/resp r1")
	})
}
