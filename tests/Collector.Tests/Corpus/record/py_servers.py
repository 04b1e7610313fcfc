"""Python servers for the capture corpus.

  py_servers.py custom PORT   a BaseHTTPRequestHandler server speaking HTTP/1.1 (keep-alive,
                              hand-written chunked bodies with extensions and trailers, 100-continue,
                              a close-delimited body)
  py_servers.py simple PORT DIR   http.server's SimpleHTTPRequestHandler (HTTP/1.0) serving DIR
"""
import http.server
import socketserver
import sys

CHUNKED = [b"5;ext=one\r\nhello\r\n", b"7\r\n, world\r\n", b"0\r\nX-Trailer: done\r\n\r\n"]
CLOSE_BODY = b"this body ends when the connection closes\n"


class Custom(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Trailer", "X-Trailer")
            self.end_headers()
            for part in CHUNKED:
                self.wfile.write(part)
                self.wfile.flush()
        elif self.path == "/close":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(CLOSE_BODY)
            self.close_connection = True
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        reply = b"received " + str(len(body)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


if __name__ == "__main__":
    kind, port = sys.argv[1], int(sys.argv[2])
    socketserver.TCPServer.allow_reuse_address = True
    if kind == "custom":
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Custom)
    else:
        directory = sys.argv[3]
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), lambda *a, **k: Quiet(*a, directory=directory, **k))
    print("listening", flush=True)
    server.serve_forever()
