#!/usr/bin/env python3
"""Records the capture corpus (tests/Collector.Tests/Corpus/*.json) with the collector itself.

Run as root, after `make build`, from anywhere:  /usr/bin/python3 tests/Collector.Tests/Corpus/record/record.py

It starts the built collector with CAPTURE_DUMP_PATH (every kernel event it reads, payloads in
base64) and TRACE_COMMS set to the programs below, then runs real servers (nginx, python
http.server, node, a Kestrel app) and real clients (curl, python urllib, node) against each other
on loopback ports it picks. Each scenario's events are the events of the connections to its
server's port. What each exchange must contain is written from what the programs were told to
send (fixed bodies below), never from the collector's output, so the replay test
(Http/CorpusTests.cs) checks the parser against the programs, not against itself.
"""
import base64
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "../../../.."))
OUT = os.path.abspath(os.path.join(HERE, ".."))
COLLECTOR = os.path.join(ROOT, "build/collector/Collector")
PY = "/usr/bin/python3"  # comm "python3" (the pyenv shim would exec another name)

INDEX = "a known file\nwith two lines\n"
BIG = "".join(f"line {i}: the quick brown fox jumps over the lazy dog\n" for i in range(400))
NGINX_JSON = '{"ok":true,"items":[1,2,3]}'
NODE_JSON = json.dumps({"service": "node", "ok": True, "list": [1, 2, 3]}, separators=(",", ":"))
KESTREL_JSON = '{"service":"kestrel","items":[1,2,3],"note":"caf\u00e9 \u65e5\u672c"}'
KESTREL_TEXT = "".join(f"line {i} of the kestrel stream\n" for i in range(300))
UPLOAD = "".join(f"{i:05d} upload line\n" for i in range(600))  # 12 KiB: several events
SMALL_JSON = '{"user":"ada","roles":["admin","dev"],"n":42}'


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, timeout=60, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd} exited {r.returncode}: {r.stderr.decode()}")
    return r.stdout


def exchange(direction, process, method, path, status, request_body="", response_body="", **extra):
    e = {"direction": str(direction), "process": process, "method": method, "path": path, "status": str(status),
         "requestBody": request_body, "responseBody": response_body}
    e.update(extra)
    return e


def both(server, client, method, path, status, request_body="", response_body="", **extra):
    """The traced server sees it inbound (direction 1), the traced client outbound (direction 2)."""
    return [exchange(1, server, method, path, status, request_body, response_body, **extra),
            exchange(2, client, method, path, status, request_body, response_body, **extra)]


# ---- servers ----

def start_nginx(tmp):
    d = tempfile.mkdtemp(dir=tmp)
    os.chmod(d, 0o755)  # nginx's worker is not root: it must reach the files
    www = os.path.join(d, "www")
    os.makedirs(os.path.join(www, "gz"))
    open(os.path.join(www, "index.txt"), "w").write(INDEX)
    open(os.path.join(www, "gz", "big.txt"), "w").write(BIG)
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-keyout", f"{d}/key.pem", "-out", f"{d}/cert.pem"])
    plain, tls = free_port(), free_port()
    conf = f"""
daemon off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log off; sendfile off; keepalive_requests 1000;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  default_type text/plain;
  server {{
    listen 127.0.0.1:{plain}; listen 127.0.0.1:{tls} ssl;
    ssl_certificate {d}/cert.pem; ssl_certificate_key {d}/key.pem;
    root {www};
    location = /echo {{ client_max_body_size 10m; if ($request_method = POST) {{ return 200 'posted\\n'; }} }}
    location = /json {{ default_type application/json; return 200 '{NGINX_JSON}'; }}
    location /gz/ {{ gzip on; gzip_types text/plain; gzip_min_length 0; gzip_proxied any; }}
  }}
}}
"""
    open(f"{d}/nginx.conf", "w").write(conf)
    p = subprocess.Popen(["nginx", "-c", f"{d}/nginx.conf", "-e", f"{d}/error.log"], stderr=subprocess.DEVNULL)
    wait_port(plain)
    wait_port(tls)
    return p, plain, tls


def start(cmd, port, cwd=None):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)
    wait_port(port)
    return p


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


# ---- scenarios: each returns (ports, expected exchanges) ----

def nginx_curl_keepalive(tmp, body_file):
    p, plain, _ = start_nginx(tmp)
    base = f"http://127.0.0.1:{plain}"
    run(["curl", "-s", f"{base}/index.txt", "--next", "-s", f"{base}/json", "--next", "-s", "-I", f"{base}/index.txt",
         "--next", "-s", "-H", "content-type: application/json", "--data-binary", SMALL_JSON, f"{base}/echo",
         "--next", "-s", f"{base}/missing.txt"])
    stop(p)
    host = {"requestHeaders": {"host": f"127.0.0.1:{plain}"}}
    return [plain], (both("nginx", "curl", "GET", "/index.txt", 200, "", INDEX, **host)
                     + both("nginx", "curl", "GET", "/json", 200, "", NGINX_JSON)
                     + both("nginx", "curl", "HEAD", "/index.txt", 200, "", "")
                     + both("nginx", "curl", "POST", "/echo", 200, SMALL_JSON, "posted\n")
                     + both("nginx", "curl", "GET", "/missing.txt", 404, "", None))


def nginx_curl_gzip_chunked(tmp, body_file):
    p, plain, _ = start_nginx(tmp)
    run(["curl", "-s", "--compressed", f"http://127.0.0.1:{plain}/gz/big.txt"])
    stop(p)
    return [plain], both("nginx", "curl", "GET", "/gz/big.txt", 200, "", BIG,
                         responseHeaders={"x-collector-decoded": "gzip", "transfer-encoding": "chunked"})


def nginx_curl_tls(tmp, body_file):
    p, _, tls = start_nginx(tmp)
    base = f"https://127.0.0.1:{tls}"
    run(["curl", "-sk", f"{base}/index.txt", "--next", "-sk", "--data-binary", f"@{body_file}", f"{base}/echo"])
    stop(p)
    return [tls], (both("nginx", "curl", "GET", "/index.txt", 200, "", INDEX)
                   + both("nginx", "curl", "POST", "/echo", 200, UPLOAD, "posted\n"))


def python_custom_curl(tmp, body_file):
    port = free_port()
    p = start([PY, os.path.join(HERE, "py_servers.py"), "custom", str(port)], port)
    base = f"http://127.0.0.1:{port}"
    run(["curl", "-s", f"{base}/chunked", "--next", "-s", "-H", "Expect: 100-continue", "--data-binary", f"@{body_file}",
         f"{base}/upload", "--next", "-s", f"{base}/close"])
    stop(p)
    return [port], (both("python3", "curl", "GET", "/chunked", 200, "", "hello, world",
                         responseHeaders={"x-trailer": "done"})
                    + both("python3", "curl", "POST", "/upload", 200, UPLOAD, f"received {len(UPLOAD)}")
                    + both("python3", "curl", "GET", "/close", 200, "", "this body ends when the connection closes\n"))


def python_simple_urllib(tmp, body_file):
    d = tempfile.mkdtemp(dir=tmp)
    open(os.path.join(d, "index.txt"), "w").write(INDEX)
    open(os.path.join(d, "big.txt"), "w").write(BIG)
    port = free_port()
    p = start([PY, os.path.join(HERE, "py_servers.py"), "simple", str(port), d], port)
    for path in ["/index.txt", "/big.txt", "/nothing-here"]:
        run([PY, os.path.join(HERE, "py_client.py"), f"http://127.0.0.1:{port}{path}", "GET"])
    stop(p)
    return [port], (both("python3", "python3", "GET", "/index.txt", 200, "", INDEX)
                    + both("python3", "python3", "GET", "/big.txt", 200, "", BIG)
                    + both("python3", "python3", "GET", "/nothing-here", 404, "", None))


def node_node(tmp, body_file):
    port = free_port()
    p = start(["node", os.path.join(HERE, "node_server.js"), str(port)], port)
    reqs = [{"method": "GET", "path": "/json"}, {"method": "GET", "path": "/chunked"},
            {"method": "HEAD", "path": "/json"}, {"method": "GET", "path": "/cached", "headers": {"If-None-Match": '"v1"'}},
            {"method": "POST", "path": "/upload", "body": SMALL_JSON, "headers": {"Content-Type": "application/json"}}]
    run(["node", os.path.join(HERE, "node_client.js"), str(port), json.dumps(reqs)])
    stop(p)
    return [port], (both("node", "node", "GET", "/json", 200, "", NODE_JSON)
                    + both("node", "node", "GET", "/chunked", 200, "", "alpha-beta-gamma",
                           responseHeaders={"transfer-encoding": "chunked"})
                    + both("node", "node", "HEAD", "/json", 200, "", "")
                    + both("node", "node", "GET", "/cached", 304, "", "")
                    + both("node", "node", "POST", "/upload", 201, SMALL_JSON, f"got {len(SMALL_JSON)} bytes"))


def node_curl_chunked_upload(tmp, body_file):
    port = free_port()
    p = start(["node", os.path.join(HERE, "node_server.js"), str(port)], port)
    base = f"http://127.0.0.1:{port}"
    run(["curl", "-s", "-H", "Transfer-Encoding: chunked", "--data-binary", f"@{body_file}", f"{base}/upload",
         "--next", "-s", f"{base}/chunked"])
    stop(p)
    return [port], (both("node", "curl", "POST", "/upload", 201, UPLOAD, f"got {len(UPLOAD)} bytes")
                    + both("node", "curl", "GET", "/chunked", 200, "", "alpha-beta-gamma"))


def kestrel(tmp, body_file, kestrel_bin):
    port = free_port()
    p = start([kestrel_bin, str(port)], port)
    base = f"http://127.0.0.1:{port}"
    run(["curl", "-s", f"{base}/json", "--next", "-s", "-I", f"{base}/json", "--next", "-s", f"{base}/stream",
         "--next", "-s", "--compressed", f"{base}/compressed/text",
         "--next", "-s", "-H", "content-type: application/json", "--data-binary", SMALL_JSON, f"{base}/echo",
         "--next", "-s", "-H", "Expect: 100-continue", "-H", "content-type: text/plain", "--data-binary", f"@{body_file}", f"{base}/echo",
         "--next", "-s", f"{base}/empty", "--next", "-s", f"{base}/missing"])
    run([PY, os.path.join(HERE, "py_client.py"), f"{base}/echo", "POST", SMALL_JSON])
    stop(p)
    return [port], (both("CorpusKestrel", "curl", "GET", "/json", 200, "", KESTREL_JSON)
                    + both("CorpusKestrel", "curl", "HEAD", "/json", 200, "", "")
                    + both("CorpusKestrel", "curl", "GET", "/stream", 200, "", KESTREL_TEXT,
                           responseHeaders={"transfer-encoding": "chunked"})
                    + both("CorpusKestrel", "curl", "GET", "/compressed/text", 200, "", KESTREL_TEXT,
                           responseHeaders={"x-collector-decoded": None})
                    + both("CorpusKestrel", "curl", "POST", "/echo", 200, SMALL_JSON, SMALL_JSON)
                    + both("CorpusKestrel", "curl", "POST", "/echo", 200, UPLOAD, UPLOAD)
                    + both("CorpusKestrel", "curl", "GET", "/empty", 204, "", "")
                    + both("CorpusKestrel", "curl", "GET", "/missing", 404, "", "")
                    + both("CorpusKestrel", "python3", "POST", "/echo", 200, SMALL_JSON, SMALL_JSON))


def main():
    if os.geteuid() != 0:
        sys.exit("run as root: the collector loads eBPF programs")
    if not os.path.exists(COLLECTOR):
        sys.exit("build the collector first: make build")
    tmp = tempfile.mkdtemp(prefix="corpus-")
    os.chmod(tmp, 0o755)
    body_file = os.path.join(tmp, "upload.txt")
    open(body_file, "w").write(UPLOAD)
    kbin = os.path.join(tmp, "kestrel")
    run(["dotnet", "build", os.path.join(HERE, "kestrel", "CorpusKestrel.csproj"), "-c", "Release", "-o", kbin])
    dump = os.path.join(tmp, "dump.jsonl")
    metrics = free_port()
    env = dict(os.environ, CAPTURE_DUMP_PATH=dump, TRACE_COMMS="curl,nginx,python3,node,CorpusKestrel",
               METRICS_BIND=f"127.0.0.1:{metrics}")
    collector = subprocess.Popen([COLLECTOR], env=env, stdout=open(os.path.join(tmp, "collector.out"), "w"),
                                 stderr=open(os.path.join(tmp, "collector.err"), "w"))
    deadline = time.time() + 60
    while True:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{metrics}/ready", timeout=1).status == 200:
                break
        except OSError:
            pass
        if time.time() > deadline or collector.poll() is not None:
            sys.exit("collector not ready: " + open(os.path.join(tmp, "collector.err")).read())
        time.sleep(0.2)

    scenarios = [
        ("nginx-curl-keepalive", "nginx and curl, five requests on one keep-alive connection: GET, HEAD, POST, 404", nginx_curl_keepalive),
        ("nginx-curl-gzip-chunked", "nginx compresses on the fly: a chunked gzip body that curl --compressed asked for", nginx_curl_gzip_chunked),
        ("nginx-curl-tls", "nginx and curl over TLS (plaintext from the OpenSSL probes); a 12 KiB POST", nginx_curl_tls),
        ("python-custom-curl", "python http.server (HTTP/1.1): chunked with extensions and a trailer, 100-continue, a close-delimited body", python_custom_curl),
        ("python-simple-urllib", "python http.server (HTTP/1.0) and python urllib, one connection per request, a 404", python_simple_urllib),
        ("node-node", "node http server and client: keep-alive, chunked, HEAD, 304, POST", node_node),
        ("node-curl-chunked-upload", "curl uploads a chunked request body to node", node_curl_chunked_upload),
        ("kestrel-curl", "a Kestrel app: JSON, HEAD, chunked stream, response compression, echo, 100-continue, 204, 404; curl and urllib", None),
    ]
    results = []
    for name, description, fn in scenarios:
        start_ns = time.monotonic_ns()
        ports, expected = fn(tmp, body_file) if fn else kestrel(tmp, body_file, os.path.join(kbin, "CorpusKestrel"))
        results.append((name, description, ports, expected, start_ns, time.monotonic_ns()))
        time.sleep(0.5)
    time.sleep(2)  # let the last events reach user space
    collector.send_signal(signal.SIGTERM)
    collector.wait(60)

    events = [json.loads(line) for line in open(dump)]
    for name, description, ports, expected, t0, t1 in results:
        conns = set()
        for e in events:
            if e["type"] == "open" and (e["localPort"] in ports or e["remotePort"] in ports):
                conns.add((e["tgid"], e["fd"], e["gen"]))
        tgids = {c[0] for c in conns}
        mine = [e for e in events
                if (e["type"] in ("open", "data", "close") and (e["tgid"], e["fd"], e["gen"]) in conns)
                or (e["type"] == "exit" and e["tgid"] in tgids and t0 <= e["ts"] <= t1 + 5_000_000_000)]
        doc = {
            "name": name,
            "description": description,
            "recorded": f"the collector's CAPTURE_DUMP_PATH, kernel {os.uname().release}, {time.strftime('%Y-%m-%d')}; "
                        "re-record with tests/Collector.Tests/Corpus/record/record.py",
            "events": mine,
            "expected": expected,
        }
        with open(os.path.join(OUT, f"{name}.json"), "w") as f:
            json.dump(doc, f, indent=1, ensure_ascii=False)
            f.write("\n")
        print(f"{name}: {len(mine)} events, {len(conns)} connections, {len(expected)} exchanges expected")


if __name__ == "__main__":
    main()
