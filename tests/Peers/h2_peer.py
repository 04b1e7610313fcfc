#!/usr/bin/python3
"""HTTP/2 test peer on python3-h2 (an HTTP/2 implementation independent of nghttp2, Kestrel and
node), for the collector's HTTP/2 capture tests. Run it with Debian's /usr/bin/python3 (comm
"python3", python-h2 and hpack installed, `ssl` on libssl.so.3).

  h2_peer.py server [--tls CERT KEY] [--port 0]
      prints "port N", then serves h2c (prior knowledge) or TLS with ALPN h2 until killed.
  h2_peer.py client --port N [--host 127.0.0.1] [--tls] [--tag T] SCENARIO...
      runs each scenario on a connection of its own, checks every answer, prints "ok SCENARIO"
      for each and "done" at the end, exit 0. Any protocol error or wrong answer: exit 1.

Every request's path is /s/<scenario>/<n>/<tag> (a pushed one adds /pushed); every answer says
which request it answers (x-peer-path header, body built by response_body()), so that a test can
check the pairing. Below, /s/basic/0 stands for /s/basic/0/<tag>.

Scenarios (each drives an awkward case on purpose):
  basic         GET /s/basic/0, POST JSON /s/basic/1, POST text /s/basic/2
  continuation  header blocks of ~30 KB in both directions: HEADERS + CONTINUATION frames
  padding       padded HEADERS and DATA frames in both directions
  table-size    dynamic-table size updates: the client's encoder goes to 0 and back to 4096, then
                the client lowers SETTINGS_HEADER_TABLE_SIZE to 256 (the server's encoder follows)
  sensitive     never-indexed literals (authorization, cookie, x-api-key; set-cookie back), with
                and without Huffman coding
  push          the server pushes /s/push/0/pushed (PUSH_PROMISE) before answering /s/push/0
  rst           /s/rst/0: the server resets the stream (CANCEL) after 1000 bytes of a 100000-byte
                body; /s/rst/1: the client resets its POST after 500 of 5000 bytes; /s/rst/2 normal
  goaway        three requests at once; the server answers the first and sends GOAWAY with it as
                last-stream-id: the other two are never processed
  interleave    100 concurrent streams (even n GET, odd n POST of 3000 bytes in 500-byte frames);
                the server answers once all are in, in another order, DATA frames interleaved
  trailers      POST with request trailers, answered with response trailers; GET with trailers
  gzip          GET with accept-encoding gzip, answered with content-encoding gzip
  upgrade       (h2c only) GET /s/upgrade/0 as HTTP/1.1 with Upgrade: h2c, answered on stream 1
                after 101; then /s/upgrade/1 as an HTTP/2 stream
  joined        for a connection opened before the collector: /s/joined/0..2, then prints
                "paused" and reads a line from stdin, then /s/joined/0 again (its :path is one
                dynamic-table index from before), /s/joined/3..7 (new and old header values)
"""
import gzip
import json
import socket
import ssl
import sys
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from hpack import NeverIndexedHeaderTuple

INTERLEAVE_COUNT = 100
BIG_HEADERS = 30          # x 1000-byte values: about 30 KB of header block
RST_BODY = 100000         # what /s/rst/0 promises (content-length) ...
RST_SENT = 1000           # ... and what it sends before RST_STREAM


def fail(message):
    print("h2_peer: " + message, file=sys.stderr, flush=True)
    sys.exit(1)


def scenario_of(path):
    parts = path.split('?')[0].split('/')
    return (parts[2], int(parts[3])) if len(parts) > 3 and parts[1] == 's' else ('', 0)


def big_value(i):
    return ''.join(chr(ord('a') + (i + k) % 26) for k in range(1000))


def interleave_body(n):
    return ''.join('%04d-%04d ' % (n, k) for k in range(300)).encode()  # 3000 bytes


def gzip_text(path):
    return ''.join('gzip line %05d of %s\n' % (i, path) for i in range(2000))


def response_body(path, request_body, content_type):
    """What the server answers to a request (the client checks it; a test can rebuild it)."""
    if path.endswith('/pushed'):
        return ('pushed %s\n' % path).encode()
    if content_type == 'application/json':
        return json.dumps({'path': path, 'echo': json.loads(request_body)}, separators=(',', ':')).encode()
    text = 'response %s\n' % path
    if request_body:
        text += 'echo %s\n' % request_body.decode()
    return text.encode()


def pad_headers_frames(data, streams, pad=40):
    """Rewrites the HEADERS frames of the given streams in a buffer of whole frames with padding
    (PADDED flag, pad-length byte, zero bytes): h2 itself pads DATA frames only."""
    out, i = bytearray(), 0
    while i < len(data):
        length = int.from_bytes(data[i:i + 3], 'big')
        ftype, flags = data[i + 3], data[i + 4]
        sid = int.from_bytes(data[i + 5:i + 9], 'big') & 0x7fffffff
        payload = data[i + 9:i + 9 + length]
        if ftype == 0x1 and sid in streams and not flags & 0x8 and length + 1 + pad <= 16384:
            payload = bytes([pad]) + payload + bytes(pad)
            flags |= 0x8
        out += len(payload).to_bytes(3, 'big') + bytes([ftype, flags]) + data[i + 5:i + 9] + payload
        i += 9 + length
    return bytes(out)


class Peer:
    """One HTTP/2 connection: h2's state machine, a socket, outbound DATA that waits for flow
    control, sent round-robin a chunk per stream (so that streams' DATA frames interleave)."""

    def __init__(self, sock, client_side):
        self.sock = sock
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=client_side, header_encoding='utf-8'))
        self.pending = {}          # stream id -> [bytes left, chunk size, pad, trailers or None]
        self.pad_streams = set()   # streams whose HEADERS frames go padded
        self.huffman = True
        encode = self.conn.encoder.encode
        self.conn.encoder.encode = lambda headers, huffman=True: encode(headers, huffman=self.huffman)

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            if self.pad_streams:
                data = pad_headers_frames(data, self.pad_streams)
            self.sock.sendall(data)

    def queue(self, sid, data, chunk=16384, pad=0, trailers=None, now=True):
        self.pending[sid] = [bytes(data), chunk, pad, trailers]
        if now:
            self.pump()

    def pump(self):
        """Sends what the windows allow: one chunk per stream per round."""
        progress = True
        while progress and self.pending:
            progress = False
            for sid in list(self.pending):
                data, chunk, pad, trailers = self.pending[sid]
                try:
                    window = self.conn.local_flow_control_window(sid)
                except h2.exceptions.StreamClosedError:
                    del self.pending[sid]
                    continue
                size = min(chunk, len(data), window - pad - (1 if pad else 0), self.conn.max_outbound_frame_size - pad - 1)
                if data and size <= 0:
                    continue
                piece, rest = data[:size], data[size:]
                last = not rest
                self.conn.send_data(sid, piece, end_stream=last and trailers is None, pad_length=pad or None)
                if last:
                    if trailers is not None:
                        self.conn.send_headers(sid, trailers, end_stream=True)
                    del self.pending[sid]
                else:
                    self.pending[sid][0] = rest
                progress = True
        self.flush()

    def receive(self):
        """Reads once from the socket: the events (empty list when the peer closed)."""
        data = self.sock.recv(65536)
        if not data:
            return None
        events = self.conn.receive_data(data)
        for e in events:
            if isinstance(e, h2.events.DataReceived) and e.flow_controlled_length:
                self.conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
        self.pump()
        return events


# ---------------------------------------------------------------------------------- server

class ServerConnection(Peer):
    def __init__(self, sock):
        super().__init__(sock, client_side=False)
        self.requests = {}      # sid -> {'headers': dict, 'body': bytearray, 'trailers': dict}
        self.interleave = []    # sids of complete /s/interleave requests
        self.goaway = []        # sids of complete /s/goaway requests
        self.closed = False

    def run(self, initial=b'', upgraded=False):
        if not upgraded:
            self.conn.initiate_connection()
        self.conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 128})
        self.flush()
        while True:
            try:
                if initial:
                    events = self.conn.receive_data(initial)
                    initial = b''
                else:
                    events = self.receive()
            except (ConnectionError, OSError):
                return
            except h2.exceptions.ProtocolError as e:
                if self.closed:
                    return
                print('h2_peer server: protocol error: %r' % e, file=sys.stderr, flush=True)
                return
            if events is None:
                return
            for e in events:
                if isinstance(e, h2.events.RequestReceived):
                    self.requests[e.stream_id] = {'headers': dict(e.headers), 'body': bytearray(), 'trailers': {}}
                elif isinstance(e, h2.events.DataReceived):
                    self.requests[e.stream_id]['body'] += e.data
                elif isinstance(e, h2.events.TrailersReceived):
                    self.requests[e.stream_id]['trailers'] = dict(e.headers)
                elif isinstance(e, h2.events.StreamEnded):
                    self.dispatch(e.stream_id)
            self.pump()

    def respond(self, sid, status='200', extra=(), body=b'', content_type='text/plain', chunk=16384, pad=0, trailers=None, now=True):
        path = self.requests[sid]['headers'][':path'] if sid in self.requests else ''
        headers = [(':status', status), ('content-type', content_type), ('content-length', str(len(body))), ('x-peer-path', path)]
        headers += list(extra)
        if trailers is not None:
            headers = [h for h in headers if h[0] != 'content-length']
        self.conn.send_headers(sid, headers, end_stream=not body and trailers is None)
        if body or trailers is not None:
            self.queue(sid, body, chunk=chunk, pad=pad, trailers=trailers, now=now)
        self.flush()

    def dispatch(self, sid):
        req = self.requests[sid]
        path = req['headers'][':path']
        scenario, n = scenario_of(path)
        content_type = req['headers'].get('content-type', '')
        body = response_body(path, bytes(req['body']), content_type)
        ctype = 'application/json' if content_type == 'application/json' else 'text/plain'
        if scenario == 'continuation':
            self.respond(sid, extra=[('x-big-resp-%02d' % i, big_value(i + n)) for i in range(BIG_HEADERS)], body=body, content_type=ctype)
        elif scenario == 'padding':
            self.pad_streams.add(sid)
            self.respond(sid, body=body, content_type=ctype, pad=100)
        elif scenario == 'table-size':
            self.respond(sid, extra=[('x-resp-repeat', 'same-response-value'), ('x-resp-n', str(n))], body=body)
        elif scenario == 'sensitive':
            self.respond(sid, extra=[NeverIndexedHeaderTuple('set-cookie', 's=secret-%d' % n),
                                     NeverIndexedHeaderTuple('x-resp-secret', 'resp-secret-%d' % n)], body=body)
        elif scenario == 'push':
            promised = self.conn.get_next_available_stream_id()
            pushed_path = path + '/pushed'
            authority = req['headers'].get(':authority', 'localhost')
            scheme = req['headers'].get(':scheme', 'http')
            self.conn.push_stream(sid, promised, [(':method', 'GET'), (':path', pushed_path), (':authority', authority), (':scheme', scheme)])
            self.requests[promised] = {'headers': {':path': pushed_path}, 'body': bytearray(), 'trailers': {}}
            self.respond(promised, body=response_body(pushed_path, b'', ''))
            self.respond(sid, body=body)
        elif scenario == 'rst' and n == 0:
            self.conn.send_headers(sid, [(':status', '200'), ('content-type', 'text/plain'), ('content-length', str(RST_BODY)), ('x-peer-path', path)])
            self.conn.send_data(sid, b'r' * RST_SENT)
            self.conn.reset_stream(sid, ErrorCodes.CANCEL)
            self.flush()
        elif scenario == 'goaway':
            self.goaway.append(sid)
            if len(self.goaway) == 3:
                first = min(self.goaway)
                self.respond(first, body=response_body(self.requests[first]['headers'][':path'], b'', ''))
                self.pump()
                self.conn.close_connection(ErrorCodes.NO_ERROR, last_stream_id=first)
                self.flush()
                self.closed = True
        elif scenario == 'interleave':
            self.interleave.append(sid)
            if len(self.interleave) == INTERLEAVE_COUNT:
                ordered = sorted(self.interleave)
                order = [ordered[(i * 37 + 11) % INTERLEAVE_COUNT] for i in range(INTERLEAVE_COUNT)]
                for s in order:
                    p = self.requests[s]['headers'][':path']
                    b = response_body(p, bytes(self.requests[s]['body']), '')
                    b += interleave_body(scenario_of(p)[1])  # long enough for several frames
                    self.respond(s, body=b, chunk=400, now=False)
                self.pump()  # all HEADERS first, then DATA a frame per stream in turn
        elif scenario == 'trailers':
            got = req['trailers'].get('x-req-trailer', '')
            self.respond(sid, extra=[('trailer', 'x-trailer-n, x-got-trailer')], body=body,
                         trailers=[('x-trailer-n', str(n)), ('x-got-trailer', got)])
        elif scenario == 'gzip' and 'gzip' in req['headers'].get('accept-encoding', ''):
            self.respond(sid, extra=[('content-encoding', 'gzip')], body=gzip.compress(gzip_text(path).encode(), mtime=0))
        else:
            self.respond(sid, body=body, content_type=ctype)


def upgrade(sock, data):
    """An HTTP/1.1 request with Upgrade: h2c: 101, then HTTP/2 with the request as stream 1."""
    while b'\r\n\r\n' not in data:
        d = sock.recv(65536)
        if not d:
            return
        data += d
    head, rest = data.split(b'\r\n\r\n', 1)
    lines = head.decode('latin-1').split('\r\n')
    method, path, _ = lines[0].split(' ')
    fields = {k.strip().lower(): v.strip() for k, v in (line.split(':', 1) for line in lines[1:])}
    if fields.get('upgrade') != 'h2c' or 'http2-settings' not in fields:
        sock.sendall(b'HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')
        return
    sock.sendall(b'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n')
    s = ServerConnection(sock)
    s.conn.initiate_upgrade_connection(fields['http2-settings'].encode())
    s.requests[1] = {'headers': {':method': method, ':path': path, ':authority': fields.get('host', '')},
                     'body': bytearray(), 'trailers': {}}
    s.flush()
    s.dispatch(1)
    s.run(initial=rest, upgraded=True)


def serve(args):
    port, tls = 0, None
    i = 0
    while i < len(args):
        if args[i] == '--port':
            port = int(args[i + 1]); i += 2
        elif args[i] == '--tls':
            tls = (args[i + 1], args[i + 2]); i += 3
        else:
            fail('unknown server argument ' + args[i])
    ctx = None
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*tls)
        ctx.set_alpn_protocols(['h2'])
    listener = socket.create_server(('127.0.0.1', port))
    print('port %d' % listener.getsockname()[1], flush=True)

    def handle(raw):
        try:
            sock = raw
            if ctx:
                sock = ctx.wrap_socket(raw, server_side=True)
                if sock.selected_alpn_protocol() != 'h2':
                    print('h2_peer server: ALPN gave %r' % sock.selected_alpn_protocol(), file=sys.stderr, flush=True)
                    return
            first = b''
            while len(first) < 24 and (first.startswith(b'PRI ') or b'\r\n\r\n' not in first):
                d = sock.recv(65536)
                if not d:
                    return
                first += d
            if first.startswith(b'PRI '):
                ServerConnection(sock).run(initial=first)
            else:
                upgrade(sock, first)
        except (ssl.SSLError, OSError) as e:
            print('h2_peer server: %r' % e, file=sys.stderr, flush=True)
        finally:
            raw.close()

    while True:
        raw, _ = listener.accept()
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=handle, args=(raw,), daemon=True).start()


# ---------------------------------------------------------------------------------- client

class ClientConnection(Peer):
    def __init__(self, host, port, tls, upgrade_path=None):
        raw = socket.create_connection((host, port))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = raw
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(['h2'])
            sock = ctx.wrap_socket(raw, server_hostname=host)
            if sock.selected_alpn_protocol() != 'h2':
                fail('ALPN gave %r' % sock.selected_alpn_protocol())
        super().__init__(sock, client_side=True)
        self.authority = '%s:%d' % (host, port)
        self.scheme = 'https' if tls else 'http'
        self.streams = {}       # sid -> response record
        self.terminated = None  # the GOAWAY's ConnectionTerminated event
        if upgrade_path is None:
            self.conn.initiate_connection()
            self.flush()
            return
        # h2c upgrade: the request goes as HTTP/1.1 and its answer comes on stream 1
        settings = self.conn.initiate_upgrade_connection().decode()
        self.sock.sendall(('GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade, HTTP2-Settings\r\n'
                           'Upgrade: h2c\r\nHTTP2-Settings: %s\r\n\r\n' % (upgrade_path, self.authority, settings)).encode())
        data = b''
        while b'\r\n\r\n' not in data:
            d = self.sock.recv(65536)
            if not d:
                fail('upgrade: connection closed')
            data += d
        head, rest = data.split(b'\r\n\r\n', 1)
        if not head.startswith(b'HTTP/1.1 101'):
            fail('upgrade refused: %r' % head)
        self.streams[1] = {'path': upgrade_path, 'status': None, 'headers': {}, 'body': bytearray(), 'trailers': {},
                           'ended': False, 'reset': None, 'pushed_from': None, 'sent': b''}
        self.flush()  # the preface and SETTINGS
        if rest:
            for e in self.conn.receive_data(rest):
                self.on_event(e)

    def request(self, path, method='GET', body=None, headers=(), content_type=None, end=True, pad=0, chunk=16384, trailers=None, now=True):
        sid = self.conn.get_next_available_stream_id()
        h = [(':method', method), (':path', path), (':scheme', self.scheme), (':authority', self.authority)]
        if content_type:
            h.append(('content-type', content_type))
        h += list(headers)
        if pad:
            self.pad_streams.add(sid)
        self.streams[sid] = {'path': path, 'status': None, 'headers': {}, 'body': bytearray(), 'trailers': {},
                             'ended': False, 'reset': None, 'pushed_from': None, 'sent': body or b''}
        self.conn.send_headers(sid, h, end_stream=body is None and trailers is None)
        if body is not None and end:
            self.queue(sid, body, chunk=chunk, pad=pad, trailers=trailers, now=now)
        elif body is not None:
            self.conn.send_data(sid, body)  # and the stream stays open
        self.flush()
        return sid

    def wait(self, done, what, timeout=15):
        deadline = time.monotonic() + timeout
        self.sock.settimeout(1)
        while not done():
            if time.monotonic() > deadline:
                fail('timed out waiting for ' + what)
            try:
                events = self.receive()
            except socket.timeout:
                continue
            except h2.exceptions.ProtocolError as e:
                fail('protocol error while waiting for %s: %r' % (what, e))
            if events is None:
                if done():
                    return
                fail('connection closed while waiting for ' + what)
            for e in events:
                self.on_event(e)

    def on_event(self, e):
        if isinstance(e, h2.events.ResponseReceived):
            r = self.streams[e.stream_id]
            r['headers'] = dict(e.headers)
            r['status'] = r['headers'][':status']
        elif isinstance(e, h2.events.DataReceived):
            self.streams[e.stream_id]['body'] += e.data
        elif isinstance(e, h2.events.TrailersReceived):
            self.streams[e.stream_id]['trailers'] = dict(e.headers)
        elif isinstance(e, h2.events.StreamEnded):
            self.streams[e.stream_id]['ended'] = True
        elif isinstance(e, h2.events.StreamReset):
            if e.stream_id in self.streams:
                self.streams[e.stream_id]['reset'] = e.error_code
        elif isinstance(e, h2.events.PushedStreamReceived):
            h = dict(e.headers)
            self.streams[e.pushed_stream_id] = {'path': h[':path'], 'status': None, 'headers': {}, 'body': bytearray(),
                                                'trailers': {}, 'ended': False, 'reset': None,
                                                'pushed_from': e.parent_stream_id, 'sent': b''}
        elif isinstance(e, h2.events.ConnectionTerminated):
            self.terminated = e

    def ended(self, *sids):
        return all(self.streams[s]['ended'] for s in sids)

    def check(self, sid, body=None):
        """The answer is whole, 200, for this request, with the body the server makes for it."""
        r = self.streams[sid]
        if r['status'] != '200':
            fail('%s: status %r' % (r['path'], r['status']))
        if r['headers'].get('x-peer-path') != r['path']:
            fail('%s: answered for %r' % (r['path'], r['headers'].get('x-peer-path')))
        expected = body if body is not None else response_body(r['path'], r['sent'], r['headers'].get('content-type'))
        if bytes(r['body']) != expected:
            fail('%s: body %r, expected %r' % (r['path'], bytes(r['body'][:200]), expected[:200]))
        return r

    def close(self):
        try:
            self.conn.close_connection()
            self.flush()
        except (h2.exceptions.ProtocolError, OSError):
            pass
        self.sock.close()


def run_scenario(name, host, port, tls, tag):
    p = lambda n: '/s/%s/%d/%s' % (name, n, tag)  # the path of request n
    c = ClientConnection(host, port, tls, upgrade_path=p(0) if name == 'upgrade' else None)
    common = [('x-tag', tag), ('user-agent', 'h2-peer')]
    if name == 'basic':
        a = c.request(p(0), headers=common)
        b = c.request(p(1), 'POST', json.dumps({'n': 1, 'tag': tag}).encode(), common, 'application/json')
        d = c.request(p(2), 'POST', ('hello 2 ' + tag).encode(), common, 'text/plain')
        c.wait(lambda: c.ended(a, b, d), name)
        for sid in (a, b, d):
            c.check(sid)
    elif name == 'continuation':
        big = [('x-big-%02d' % i, big_value(i)) for i in range(BIG_HEADERS)]
        a = c.request(p(0), headers=common + big)
        b = c.request(p(1), 'POST', ('big headers ' + tag).encode(), common + big, 'text/plain')
        c.wait(lambda: c.ended(a, b), name)
        for sid, n in ((a, 0), (b, 1)):
            r = c.check(sid)
            for i in range(BIG_HEADERS):
                if r['headers'].get('x-big-resp-%02d' % i) != big_value(i + n):
                    fail('continuation: response header %d' % i)
    elif name == 'padding':
        a = c.request(p(0), headers=common, pad=1)
        b = c.request(p(1), 'POST', ('padded body 1 ' + tag).encode(), common, 'text/plain', pad=50)
        c.wait(lambda: c.ended(a, b), name)
        c.check(a); c.check(b)
    elif name == 'table-size':
        def one(n):
            sid = c.request(p(n), headers=common + [('x-repeat', 'same-value-' + tag), ('x-n', str(n))])
            c.wait(lambda: c.ended(sid), '%s %d' % (name, n))
            r = c.check(sid)
            if r['headers'].get('x-resp-n') != str(n) or r['headers'].get('x-resp-repeat') != 'same-response-value':
                fail('table-size: response headers %r' % r['headers'])
        one(0); one(1)
        c.conn.encoder.header_table_size = 0       # evicts everything: a size update 0 starts the next block
        one(2)
        c.conn.encoder.header_table_size = 4096    # and back
        one(3)
        c.conn.update_settings({h2.settings.SettingCodes.HEADER_TABLE_SIZE: 256})  # the server's encoder must shrink
        c.flush()
        one(4); one(5)
    elif name == 'sensitive':
        sids = []
        for n in range(4):
            c.huffman = n % 2 == 0
            sids.append(c.request(p(n), headers=common + [
                ('authorization', 'Bearer secret-%d-%s' % (n, tag)), ('cookie', 'c=%d' % n),
                NeverIndexedHeaderTuple('x-api-key', 'key-%d' % n)]))
            c.flush()
        c.huffman = True
        c.wait(lambda: c.ended(*sids), name)
        for n, sid in enumerate(sids):
            r = c.check(sid)
            if r['headers'].get('set-cookie') != 's=secret-%d' % n:
                fail('sensitive: set-cookie %r' % r['headers'].get('set-cookie'))
    elif name == 'push':
        a = c.request(p(0), headers=common)
        pushed = lambda: [p for p, r in c.streams.items() if r['pushed_from'] == a]
        c.wait(lambda: c.ended(a) and pushed() and c.ended(*pushed()), name)
        c.check(a)
        r = c.check(pushed()[0])
        if r['path'] != p(0) + '/pushed':
            fail('push: promised %r' % r['path'])
    elif name == 'rst':
        a = c.request(p(0), headers=common)
        c.wait(lambda: c.streams[a]['reset'] is not None, 'the server reset')
        if len(c.streams[a]['body']) > RST_SENT or c.streams[a]['ended']:
            fail('rst: the reset stream went on')
        b = c.request(p(1), 'POST', b'x' * 500, common, 'text/plain', end=False)
        c.conn.reset_stream(b, ErrorCodes.CANCEL)
        c.flush()
        d = c.request(p(2), headers=common)
        c.wait(lambda: c.ended(d), name)
        c.check(d)
    elif name == 'goaway':
        sids = [c.request(p(n), headers=common) for n in range(3)]
        c.wait(lambda: c.terminated is not None and c.ended(sids[0]), 'GOAWAY')
        c.check(sids[0])
        if c.terminated.last_stream_id != sids[0] or c.terminated.error_code != ErrorCodes.NO_ERROR:
            fail('goaway: %r' % c.terminated)
        if any(c.streams[x]['status'] for x in sids[1:]):
            fail('goaway: a stream above last-stream-id was answered')
    elif name == 'interleave':
        sids = []
        for n in range(INTERLEAVE_COUNT):
            if n % 2:
                sids.append(c.request(p(n), 'POST', interleave_body(n), common, 'text/plain', chunk=500, now=False))
            else:
                sids.append(c.request(p(n), headers=common))
        c.pump()  # the bodies a frame per stream in turn
        c.wait(lambda: c.ended(*sids), name, timeout=30)
        for n, sid in enumerate(sids):
            r = c.streams[sid]
            c.check(sid, response_body(r['path'], r['sent'], '') + interleave_body(n))
    elif name == 'trailers':
        a = c.request(p(0), 'POST', ('with trailers ' + tag).encode(), common + [('te', 'trailers')], 'text/plain',
                      trailers=[('x-req-trailer', 'req-' + tag)])
        b = c.request(p(1), headers=common + [('te', 'trailers')])
        c.wait(lambda: c.ended(a, b), name)
        for sid, n, got in ((a, 0, 'req-' + tag), (b, 1, '')):
            r = c.check(sid)
            if r['trailers'] != {'x-trailer-n': str(n), 'x-got-trailer': got}:
                fail('trailers: %r' % r['trailers'])
    elif name == 'gzip':
        a = c.request(p(0), headers=common + [('accept-encoding', 'gzip')])
        c.wait(lambda: c.ended(a), name)
        r = c.streams[a]
        if r['headers'].get('content-encoding') != 'gzip' or gzip.decompress(bytes(r['body'])).decode() != gzip_text(p(0)):
            fail('gzip: wrong answer')
    elif name == 'upgrade':
        if tls:
            fail('upgrade: h2c only')
        b = c.request(p(1), headers=common)
        c.wait(lambda: c.ended(1, b), name)
        c.check(1); c.check(b)
    elif name == 'joined':
        session = [('x-session', 'session-' + tag)] + common
        def get(path, headers):
            sid = c.request(path, headers=headers)
            c.wait(lambda: c.ended(sid), path)
            c.check(sid)
        def post(path, headers):
            sid = c.request(path, 'POST', json.dumps({'path': path}).encode(), headers, 'application/json')
            c.wait(lambda: c.ended(sid), path)
            c.check(sid)
        get(p(0), session)
        post(p(1), session)
        get(p(2), session + [('x-old', 'old-value')])
        print('paused', flush=True)
        if not sys.stdin.readline():
            fail('joined: stdin closed')
        get(p(0), session)                              # :path fully indexed from before
        get(p(3), session + [('x-old', 'old-value')])   # only old dynamic entries besides :path
        get(p(4), session + [('x-new', 'new-value-4')]) # a new entry ...
        get(p(5), session + [('x-new', 'new-value-4')]) # ... referenced
        post(p(6), session + [('x-new', 'new-value-6')])
        get(p(7), session)
    else:
        fail('unknown scenario ' + name)
    c.close()


def client(args):
    host, port, tls, tag, scenarios = '127.0.0.1', None, False, 't', []
    i = 0
    while i < len(args):
        if args[i] == '--port':
            port = int(args[i + 1]); i += 2
        elif args[i] == '--host':
            host = args[i + 1]; i += 2
        elif args[i] == '--tls':
            tls = True; i += 1
        elif args[i] == '--tag':
            tag = args[i + 1]; i += 2
        else:
            scenarios.append(args[i]); i += 1
    if port is None or not scenarios:
        fail('client needs --port and scenarios')
    for name in scenarios:
        run_scenario(name, host, port, tls, tag)
        print('ok ' + name, flush=True)
    print('done', flush=True)


SCENARIOS = ['basic', 'continuation', 'padding', 'table-size', 'sensitive', 'push', 'rst', 'goaway', 'interleave', 'trailers', 'gzip']

if __name__ == '__main__':
    if len(sys.argv) > 1 and sys.argv[1] == 'server':
        serve(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == 'client':
        client(sys.argv[2:])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
