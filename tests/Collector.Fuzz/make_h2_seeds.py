#!/usr/bin/python3
"""Seeds of the http2 and hpack fuzz targets. http2: real HTTP/2 conversations between python3-h2's client and
server, written as ScriptTarget scripts (tests/Collector.Fuzz/ScriptTarget.cs):

  record = op u8 [len u16 LE, payload]; op bit 0: 0 the client's bytes, 1 the server's;
           bits 1-2 slot; bits 3-5 kind (0 data, 4 gap, 5 close, 6 open; bit 7 of open: the
           traced process is the client)

The target sends the client preface itself when a connection opens, so the client's bytes here
start after it (with its SETTINGS). The bytes are cut into events of varying sizes, as the kernel
cuts them. Run with Debian's python (it has h2 and hpack):

  /usr/bin/python3 tests/Collector.Fuzz/make_h2_seeds.py [ROOT]   (writes ROOT/http2, ROOT/hpack;
                                                                   default ROOT: corpus beside this file)

hpack: header blocks of python3-hpack's encoder (the RFC 7541 appendix C examples, Huffman or not,
a small table with evictions, never-indexed fields, a missed block, size updates) in HpackTarget's
records.
"""
import gzip
import os
import random
import struct
import sys

import h2.config
import h2.connection
import h2.events
from hyperframe.frame import ContinuationFrame, HeadersFrame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class Conversation:
    """A client and a server H2Connection wired together; every byte either sends is recorded."""

    def __init__(self, seed, traced_is_client=False, slot=0):
        self.rand = random.Random(seed)
        self.slot = slot
        self.out = bytearray()
        if traced_is_client:
            self.out.append((6 << 3) | (slot << 1) | 0x80)  # open: the traced process is the client
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        self.client.initiate_connection()
        data = self.client.data_to_send()
        assert data.startswith(PREFACE)
        self.server.receive_data(data)
        self.record(0, data[len(PREFACE):])
        self.server.initiate_connection()
        self.flush()

    def record(self, side, data):
        """data as events of 1..300 bytes (sometimes one event for all)."""
        at = 0
        while at < len(data):
            n = len(data) - at if self.rand.random() < 0.3 else self.rand.randint(1, 300)
            n = min(n, 65535, len(data) - at)
            self.out += struct.pack("<BH", side | (self.slot << 1), n) + data[at:at + n]
            at += n

    def flush(self, deliver_to_client=True):
        """Moves pending bytes both ways until neither side has anything to send; the receivers
        give credit back for the DATA they read (WINDOW_UPDATE)."""
        while True:
            c = self.client.data_to_send()
            if c:
                self.record(0, c)
                self.acknowledge(self.server, self.server.receive_data(c))
            s = self.server.data_to_send()
            if s:
                self.record(1, s)
                if deliver_to_client:
                    self.acknowledge(self.client, self.client.receive_data(s))
            if not c and not s:
                return

    @staticmethod
    def acknowledge(conn, events):
        for e in events:
            if isinstance(e, h2.events.DataReceived) and e.flow_controlled_length:
                conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)

    def request(self, path, method=b"GET", body=None, extra=()):
        sid = self.client.get_next_available_stream_id()
        headers = [(b":method", method), (b":scheme", b"http"), (b":authority", b"svc.local"), (b":path", path),
                   (b"user-agent", b"h2-seed"), (b"authorization", b"Bearer secret")] + list(extra)
        if body is not None:
            headers.append((b"content-length", str(len(body)).encode()))
        self.client.send_headers(sid, headers, end_stream=body is None)
        if body is not None:
            self.send_body(self.client, sid, body)
        self.flush()
        return sid

    def send_body(self, conn, sid, body, pad=None, end=True):
        at = 0
        while at < len(body):
            n = min(len(body) - at, conn.max_outbound_frame_size - (pad or 0) - 1, conn.local_flow_control_window(sid))
            last = at + n >= len(body)
            conn.send_data(sid, body[at:at + n], end_stream=end and last, pad_length=pad)
            at += n
            self.flush()

    def respond(self, sid, status=b"200", body=b"", extra=(), trailers=None, pad=None):
        headers = [(b":status", status), (b"content-type", b"application/json"), (b"server", b"h2-seed")] + list(extra)
        if body:
            headers.append((b"content-length", str(len(body)).encode()))
        self.server.send_headers(sid, headers, end_stream=not body and trailers is None)
        if body:
            self.send_body(self.server, sid, body, pad=pad, end=trailers is None)
        if trailers is not None:
            self.server.send_headers(sid, trailers, end_stream=True)
        self.flush()

    def close(self):
        self.client.close_connection()
        self.flush()
        self.out.append((5 << 3) | (self.slot << 1))
        return bytes(self.out)


def simple():
    c = Conversation(1)
    for i, path in enumerate([b"/users/1", b"/users/2?x=y", b"/static/app.js"]):
        sid = c.request(path, extra=[(b"accept", b"application/json"), (b"cookie", b"s=%d" % i)])
        c.respond(sid, body=b'{"id":%d,"name":"user"}' % i)
    return c.close()


def post_large_gzip():
    c = Conversation(2)
    body = bytes(random.Random(7).choices(b"abcdefghij{}\":,0123456789", k=20000))
    sid = c.request(b"/upload", method=b"POST", body=body, extra=[(b"content-type", b"application/json")])
    reply = gzip.compress(b'{"stored":true,"size":20000}' * 40, mtime=0)
    c.respond(sid, body=reply, extra=[(b"content-encoding", b"gzip")])
    return c.close()


def continuation_padding():
    """A request whose header block is cut into HEADERS (padded, with priority) and two
    CONTINUATION frames, a padded DATA response, and trailers."""
    c = Conversation(3)
    sid = c.request(b"/first")
    c.respond(sid, body=b"first", pad=7)
    sid = c.client.get_next_available_stream_id()
    headers = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"svc.local"), (b":path", b"/continued"),
               (b"x-long", b"v" * 120), (b"x-other", b"w" * 60), (b"accept-encoding", b"gzip, br")]
    block = c.client.encoder.encode(headers)
    a, b = len(block) // 3, 2 * len(block) // 3
    f1 = HeadersFrame(sid, data=block[:a], flags=["END_STREAM", "PADDED", "PRIORITY"], pad_length=5,
                      depends_on=0, stream_weight=200, exclusive=False)
    f2 = ContinuationFrame(sid, data=block[a:b])
    f3 = ContinuationFrame(sid, data=block[b:], flags=["END_HEADERS"])
    raw = f1.serialize() + f2.serialize() + f3.serialize()
    c.record(0, raw)
    c.server.receive_data(raw)
    # the client's H2Connection did not see this stream open: its answer is recorded, not delivered
    c.server.send_headers(sid, [(b":status", b"200"), (b"content-type", b"text/plain")])
    c.server.send_data(sid, b"continued body", pad_length=12)
    c.server.send_headers(sid, [(b"grpc-status", b"0"), (b"x-trailer", b"t")], end_stream=True)
    c.flush(deliver_to_client=False)
    c.out.append((5 << 3))
    return bytes(c.out)


def reset_ping_push():
    """RST_STREAM from both sides, PING, a server push, WINDOW_UPDATE, and GOAWAY."""
    c = Conversation(4, traced_is_client=True)
    sid = c.request(b"/slow")
    c.server.send_headers(sid, [(b":status", b"200")])
    c.flush()
    c.client.reset_stream(sid, error_code=8)  # CANCEL
    c.flush()
    sid = c.request(b"/refused", method=b"DELETE")
    c.server.reset_stream(sid, error_code=7)  # REFUSED_STREAM
    c.flush()
    c.client.ping(b"12345678")
    c.flush()
    sid = c.request(b"/index.html")
    promised = c.server.get_next_available_stream_id()
    c.server.push_stream(sid, promised, [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"svc.local"),
                                         (b":path", b"/style.css")])
    c.respond(sid, body=b"<html>index</html>", extra=[(b"link", b"</style.css>; rel=preload")])
    c.respond(promised, body=b"body{}", extra=[(b"content-type", b"text/css")])
    sid = c.request(b"/big")
    c.respond(sid, body=b"B" * 40000)  # past half the initial window: WINDOW_UPDATEs
    c.server.close_connection(error_code=0, last_stream_id=sid)
    c.flush()
    return c.close()


def many_interleaved():
    """Several streams open at once, their DATA frames interleaved, a 204 and a 404."""
    c = Conversation(5)
    sids = [c.request(b"/item/%d" % i) for i in range(4)]
    for sid in sids:
        c.server.send_headers(sid, [(b":status", b"200" if sid != sids[2] else b"404"), (b"content-type", b"text/plain")])
    c.flush()
    for round_ in range(3):
        for sid in sids:
            c.server.send_data(sid, b"part %d of stream %d;" % (round_, sid), end_stream=round_ == 2)
        c.flush()
    sid = c.request(b"/empty", method=b"PUT", body=b"x=1")
    c.respond(sid, status=b"204")
    return c.close()


def hpack_record_block(block):
    return struct.pack("<BH", 0, len(block)) + block


def hpack_seeds():
    """Seeds of the hpack target (tests/Collector.Fuzz/HpackTarget.cs): records of
    [0][len u16 LE][header block], [2][u16 LE] (SETTINGS_HEADER_TABLE_SIZE), [3] (MarkUnsynced)."""
    import hpack
    requests = [
        [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com")],
        [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com"), ("cache-control", "no-cache")],
        [(":method", "GET"), (":scheme", "https"), (":path", "/index.html"), (":authority", "www.example.com"), ("custom-key", "custom-value")],
    ]
    responses = [
        [(":status", "302"), ("cache-control", "private"), ("date", "Mon, 21 Oct 2013 20:13:21 GMT"), ("location", "https://www.example.com")],
        [(":status", "307"), ("cache-control", "private"), ("date", "Mon, 21 Oct 2013 20:13:21 GMT"), ("location", "https://www.example.com")],
        [(":status", "200"), ("cache-control", "private"), ("date", "Mon, 21 Oct 2013 20:13:22 GMT"), ("location", "https://www.example.com"),
         ("content-encoding", "gzip"), ("set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1")],
    ]
    seeds = {}
    for huffman in (False, True):
        e = hpack.Encoder()
        seeds["requests" + ("-huffman" if huffman else "")] = b"".join(hpack_record_block(e.encode(h, huffman=huffman)) for h in requests)
        # a small table (SETTINGS 256 and the encoder's size update): entries evicted as they come
        e = hpack.Encoder()
        e.header_table_size = 256
        seeds["responses-evict" + ("-huffman" if huffman else "")] = struct.pack("<BH", 2, 256) + b"".join(
            hpack_record_block(e.encode(h, huffman=huffman)) for h in responses)
    e = hpack.Encoder()
    secret = [(":method", "POST"), (":path", "/login"), hpack.NeverIndexedHeaderTuple("authorization", "Basic dXNlcjpwYXNz"),
              ("content-type", "application/grpc"), ("te", "trailers"), ("x-big", "z" * 300)]
    first = e.encode(secret)
    # a block missed (MarkUnsynced), then references to entries the decoder never saw
    seeds["never-indexed-unsynced"] = hpack_record_block(first) + b"\x03" + hpack_record_block(e.encode(secret + [("x-after", "1")]))
    # size update to 0 (the table empties) and back to the default, at the start of one block
    seeds["size-update-zero"] = hpack_record_block(e.encode(requests[0])) + hpack_record_block(b"\x20\x3f\xe1\x1f" + e.encode(requests[1]))
    return seeds


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    seeds = {"simple": simple, "post-large-gzip": post_large_gzip, "continuation-padding": continuation_padding,
             "reset-ping-push": reset_ping_push, "many-interleaved": many_interleaved}
    for target, made in (("http2", {name: make() for name, make in seeds.items()}), ("hpack", hpack_seeds())):
        out = os.path.join(root, target)
        os.makedirs(out, exist_ok=True)
        for name, data in made.items():
            with open(os.path.join(out, name), "wb") as f:
                f.write(data)
            print(f"{target}/{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
