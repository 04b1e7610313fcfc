// HTTPS test peer on Go's own net/http and crypto/tls (no OpenSSL anywhere), for the collector's Go
// TLS tests. Standard library only, and written for every toolchain the tests build it with, Go 1.15
// included (io/ioutil, no generics, no io.ReadAll). tests/Peers/build-go.sh builds it.
//
//   go-tls server [--port 0] [--cert CERT --key KEY] [--wrap]
//       prints "port N", then serves HTTP/1.1 and HTTP/2 (ALPN) over TLS until killed; without
//       --cert it makes a self-signed ECDSA certificate for 127.0.0.1 and localhost in memory.
//       --wrap: each accepted connection is wrapped in a net.Conn of this program's own type before
//       TLS runs over it (as middleware that counts bytes or sets deadlines does), so tls.Conn's
//       conn is not a *net.TCPConn.
//   go-tls client --url https://127.0.0.1:N [--mode h1|h2] [--count K] [--parallel P] [--tag T] [--big B]
//                 [--wrap] [--hold FILE]
//       --wrap: the connections it dials are wrapped the same way. --hold: after its first round,
//       prints "held" and waits for FILE to exist before the next (its connections stay open).
//       one http.Client (one connection pool, keep-alive) used by P goroutines, each doing K rounds
//       of: GET /g/get/T/G/R, POST JSON /g/post/T/G/R, GET /g/big/T/G/R (1 MiB answer) and POST
//       /g/big/T/G/R (1 MiB request body) (the big ones in the first B rounds only, when given). Checks every answer and the protocol (h1: HTTP/1.1, the
//       transport offers no h2; h2: HTTP/2.0), prints "ok ..." per exchange, then "done", exit 0.
//
// Answers: GET /g/1k -> 1024 bytes of text (make bench-capture's Go row); GET /g/get/... -> text "go <path> <proto>\n"; POST /g/post/... (JSON) ->
// {"path":P,"proto":V,"echo":<request>}; GET /g/big/... -> BigSize bytes of Pattern;
// POST /g/big/... -> {"path":P,"received":N,"intact":true|false}.
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"flag"
	"fmt"
	"io/ioutil"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// BigSize is the size of the large bodies in both directions: bigger than any TLS record and
// than the 16 KiB x 8 a capture call takes in one go, so it crosses chunking and record splitting.
const BigSize = 1 << 20

func bigBody() []byte {
	const pattern = "abcdefghijklmnopqrstuvwxyz0123456789\n"
	b := make([]byte, BigSize)
	for i := range b {
		b[i] = pattern[i%len(pattern)]
	}
	return b
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "go-tls: "+format+"\n", args...)
	os.Exit(1)
}

func selfSigned() tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		fail("key: %v", err)
	}
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "go-tls test peer"},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		fail("certificate: %v", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func server(args []string) {
	fs := flag.NewFlagSet("server", flag.ExitOnError)
	port := fs.Int("port", 0, "port on 127.0.0.1 (0: any)")
	certFile := fs.String("cert", "", "PEM certificate (default: self-signed, in memory)")
	keyFile := fs.String("key", "", "PEM key")
	wrap := fs.Bool("wrap", false, "wrap each accepted connection in a net.Conn of our own")
	fs.Parse(args)

	var cert tls.Certificate
	if *certFile != "" {
		var err error
		if cert, err = tls.LoadX509KeyPair(*certFile, *keyFile); err != nil {
			fail("%v", err)
		}
	} else {
		cert = selfSigned()
	}
	big := bigBody()
	mux := http.NewServeMux()
	mux.HandleFunc("/g/get/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "go %s %s\n", r.URL.Path, r.Proto)
	})
	kib := bytes.Repeat([]byte("0123456789abcdef"), 64)
	mux.HandleFunc("/g/1k", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(kib)
	})
	mux.HandleFunc("/g/post/", func(w http.ResponseWriter, r *http.Request) {
		var echo interface{}
		if err := json.NewDecoder(r.Body).Decode(&echo); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]interface{}{"path": r.URL.Path, "proto": r.Proto, "echo": echo})
	})
	mux.HandleFunc("/g/big/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			got, err := ioutil.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]interface{}{"path": r.URL.Path, "received": len(got), "intact": bytes.Equal(got, big)})
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", fmt.Sprint(len(big)))
		w.Write(big)
	})

	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		fail("%v", err)
	}
	fmt.Printf("port %d\n", ln.Addr().(*net.TCPAddr).Port)
	if *wrap {
		ln = wrappingListener{ln}
	}
	// http.Server adds h2 to the offered protocols itself (ServeTLS), so clients choose by ALPN
	srv := &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	fail("%v", srv.ServeTLS(ln, "", ""))
}

// wrappedConn is a net.Conn that is not a *net.TCPConn: the type of tls.Conn.conn the collector
// cannot read a socket from.
type wrappedConn struct {
	net.Conn
	bytes int64
}

func (w *wrappedConn) Read(b []byte) (int, error) {
	n, err := w.Conn.Read(b)
	w.bytes += int64(n)
	return n, err
}

func (w *wrappedConn) Write(b []byte) (int, error) {
	n, err := w.Conn.Write(b)
	w.bytes += int64(n)
	return n, err
}

type wrappingListener struct{ net.Listener }

func (l wrappingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &wrappedConn{Conn: c}, nil
}

type round struct {
	client *http.Client
	base   string
	proto  string
	big    []byte
}

func (c *round) do(method, path, contentType string, body []byte) (*http.Response, []byte) {
	var reader *bytes.Reader
	if body != nil {
		reader = bytes.NewReader(body)
	}
	var req *http.Request
	var err error
	if reader != nil {
		req, err = http.NewRequest(method, c.base+path, reader)
	} else {
		req, err = http.NewRequest(method, c.base+path, nil)
	}
	if err != nil {
		fail("%v", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		fail("%s %s: %v", method, path, err)
	}
	got, err := ioutil.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		fail("%s %s: body: %v", method, path, err)
	}
	if resp.StatusCode != 200 || resp.Proto != c.proto {
		fail("%s %s: %s %s, expected 200 %s: %s", method, path, resp.Proto, resp.Status, c.proto, got)
	}
	return resp, got
}

func (c *round) run(suffix string, big bool, out chan<- string) {
	get := "/g/get/" + suffix
	if _, got := c.do("GET", get, "", nil); string(got) != fmt.Sprintf("go %s %s\n", get, c.proto) {
		fail("GET %s: %q", get, got)
	}
	out <- "ok get " + suffix

	post := "/g/post/" + suffix
	request := map[string]interface{}{"tag": suffix, "n": 42, "list": []string{"a", "b"}}
	body, _ := json.Marshal(request)
	_, got := c.do("POST", post, "application/json", body)
	var answer struct {
		Path  string
		Proto string
		Echo  map[string]interface{}
	}
	if err := json.Unmarshal(got, &answer); err != nil || answer.Path != post || answer.Proto != c.proto || answer.Echo["tag"] != suffix {
		fail("POST %s: %s (%v)", post, got, err)
	}
	out <- "ok post " + suffix
	if !big {
		return
	}

	bigPath := "/g/big/" + suffix
	if _, got := c.do("GET", bigPath, "", nil); !bytes.Equal(got, c.big) {
		fail("GET %s: %d bytes, not the %d expected", bigPath, len(got), len(c.big))
	}
	out <- "ok big-get " + suffix

	_, got = c.do("POST", bigPath, "application/octet-stream", c.big)
	var received struct {
		Path     string
		Received int
		Intact   bool
	}
	if err := json.Unmarshal(got, &received); err != nil || received.Received != len(c.big) || !received.Intact {
		fail("POST %s: %s (%v)", bigPath, got, err)
	}
	out <- "ok big-post " + suffix
}

func client(args []string) {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	url := fs.String("url", "", "https://127.0.0.1:N")
	mode := fs.String("mode", "h1", "h1 or h2")
	count := fs.Int("count", 3, "rounds per goroutine, on kept-alive connections")
	parallel := fs.Int("parallel", 1, "goroutines sharing the client")
	tag := fs.String("tag", "t", "first path segment after the route, to tell runs apart")
	bigRounds := fs.Int("big", -1, "rounds (the first ones) that also move the 1 MiB bodies; -1: all")
	wrap := fs.Bool("wrap", false, "wrap each dialled connection in a net.Conn of our own")
	hold := fs.String("hold", "", "after the first round, wait for this file to exist")
	fs.Parse(args)
	if *url == "" {
		fail("client needs --url")
	}

	transport := &http.Transport{
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true},
		MaxIdleConnsPerHost: *parallel,
	}
	if *wrap {
		dialer := &net.Dialer{}
		transport.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &wrappedConn{Conn: c}, nil
		}
	}
	c := &round{client: &http.Client{Transport: transport, Timeout: time.Minute}, base: strings.TrimRight(*url, "/"), big: bigBody()}
	switch *mode {
	case "h1":
		// a non-nil, empty TLSNextProto keeps the transport from offering h2
		transport.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		c.proto = "HTTP/1.1"
	case "h2":
		// with its own TLS config a transport offers h2 only when told to
		transport.ForceAttemptHTTP2 = true
		c.proto = "HTTP/2.0"
	default:
		fail("mode %q: h1 or h2", *mode)
	}

	out := make(chan string, 64)
	var held sync.Once
	var wg sync.WaitGroup
	for g := 0; g < *parallel; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for r := 0; r < *count; r++ {
				if r == 1 && *hold != "" {
					held.Do(func() { out <- "held" })
					for {
						if _, err := os.Stat(*hold); err == nil {
							break
						}
						time.Sleep(20 * time.Millisecond)
					}
				}
				c.run(fmt.Sprintf("%s/%d/%d", *tag, g, r), *bigRounds < 0 || r < *bigRounds, out)
			}
		}(g)
	}
	go func() { wg.Wait(); close(out) }()
	for line := range out {
		fmt.Println(line)
	}
	fmt.Println("done")
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: go-tls server|client [flags]")
	}
	switch os.Args[1] {
	case "server":
		server(os.Args[2:])
	case "client":
		client(os.Args[2:])
	default:
		fail("usage: go-tls server|client [flags]")
	}
}
