#!/usr/bin/python3
"""Random HTTP/2 conversations, made in memory by two python3-h2 connections (a client and a
server) pumping bytes to each other, printed as JSON for the Http2Session property tests.

Parameters: a JSON object as the first argument, or on stdin (every key optional):
  seed, count                 conversations made from seed (each has its own seed: seed * 100003 + i)
  min_streams, max_streams    requests per conversation (log-uniform between them)
  max_body                    largest body in bytes
  p_large_body                share of bodies between 16 KiB and max_body
  p_reset, p_push, p_trailers, p_big_headers, p_pad, p_raw_literals, p_goaway,
  p_table_size, p_frame_size, p_noise, p_priority
  request_trailers            clients send trailers too (off: the contract does not say where they go)
  informational               servers send 1xx before the final status (off, same reason)
  blocks                      describe the header blocks (c_blocks, s_blocks; costs a second decode)

Output: {"seed": s, "conversations": [conversation...]}, a conversation being
  seed, c_chunks, s_chunks    base64 of each data_to_send() of the client (the request direction)
                              and of the server, in order
  order                       "c"/"s" per chunk: the order in which they were written; a chunk of
                              one side is only ever caused by chunks before it
  frame_size_changed          a side raised SETTINGS_MAX_FRAME_SIZE
  c_blocks, s_blocks          with blocks: the header blocks of each direction (see header_blocks)
  exchanges                   per stream, in completion order (then the reset ones, in reset order):
      stream, pushed, reset, response_complete (false: reset before the response ended), method,
      path, authority (null without :authority), scheme,
      request_headers [[name, value]...] (no pseudo-headers, wire order), request_trailers,
      request_body (base64), status, response_headers, response_trailers, response_body,
      informational [status...]
  Header names and values are as the peer decoded them (h2 with inbound normalization off, so
  nothing is joined or reordered); bodies as the peer received them (a reset stream's, up to the
  reset: all of them is in flight and delivered before a RST_STREAM is sent)"""

import base64
import json
import math
import random
import sys
import traceback

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (DataReceived, InformationalResponseReceived, PushedStreamReceived,
                       RequestReceived, ResponseReceived, SettingsAcknowledged, StreamEnded, StreamReset,
                       TrailersReceived)
from h2.settings import SettingCodes
from hpack import Decoder, NeverIndexedHeaderTuple
from hpack.hpack import decode_integer
from hyperframe.frame import Frame, HeadersFrame, PushPromiseFrame, RstStreamFrame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DEFAULTS = dict(
    seed=1, count=10, min_streams=1, max_streams=100, max_body=70 * 1024, p_large_body=0.04,
    p_reset=0.08, p_push=0.08, p_trailers=0.2, p_big_headers=0.01, p_pad=0.2, p_raw_literals=0.2,
    p_goaway=0.4, p_table_size=0.3, p_frame_size=0.1, p_noise=0.03, p_priority=0.1,
    request_trailers=False, informational=False, blocks=False,
)

NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-"
NAME_EXTRA = "_.~!#$%&'*+^`|"
# printable ASCII; the rare ones have long Huffman codes (10-15 bits)
VALUE_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_./:;=,"
VALUE_RARE = "!\"#$%&'()*+<>?@[\\]^`{|}~"
COMMON_NAMES = ["accept", "user-agent", "x-request-id", "authorization", "cache-control",
                "x-forwarded-for", "accept-language", "content-type", "etag", "vary", "server",
                "x-b3-traceid", "set-cookie", "location", "date"]
_ALPHABET = b'abcdefghijklmnopqrstuvwxyz0123456789 {}":,[]\r\n\t'
TEXT = bytes(_ALPHABET[i % len(_ALPHABET)] for i in range(256))  # random bytes to text
METHODS = ["GET", "GET", "GET", "POST", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
STATUSES = [200, 200, 200, 200, 201, 202, 204, 206, 301, 302, 304, 400, 401, 403, 404, 409, 429,
            500, 502, 503]


class Generated(Exception):
    pass


def b64(b):
    return base64.b64encode(bytes(b)).decode("ascii")


def text(b):
    return b.decode("utf-8") if isinstance(b, (bytes, bytearray)) else b


class Stream:
    def __init__(self, sid=None):
        self.sid = sid
        self.pushed = False
        self.parent = None
        # plan
        self.method = self.path = self.authority = self.scheme = None
        self.req_fields = []      # what the client sends (non-pseudo)
        self.req_body = b""
        self.req_trailers = []
        self.status = 200
        self.informational = []
        self.resp_fields = []
        self.resp_body = b""
        self.resp_trailers = []
        self.reset_by = None      # 'c' or 's'
        self.pushes = 0           # pushes planned on this stream (server side)
        # progress of the senders
        self.opened = False       # request headers (or push promise) sent
        self.req_sent = 0
        self.req_done = False     # END_STREAM sent by the client
        self.resp_started = False
        self.info_sent = 0
        self.resp_sent = 0
        self.resp_done = False    # END_STREAM sent by the server
        self.reset = False
        self.response_complete = False  # reset after the response had ended (its END_STREAM before the RST_STREAM)
        self.pushes_made = 0
        # what the receivers saw
        self.got = dict(request_headers=None, request_pseudo={}, request_body=bytearray(),
                        request_trailers=[], request_ended=False, response_headers=None,
                        status=None, response_body=bytearray(), response_trailers=[],
                        response_ended=False, informational=[])
        self.server_seen = False  # the server knows of the stream (request received / pushed)

    def active(self):
        return self.opened and not self.reset and not (self.req_done and self.resp_done)


class Conversation:
    def __init__(self, index, seed, p):
        self.r = random.Random(seed)
        self.p = p
        self.index = index
        self.seed = seed
        cfg = dict(header_encoding=None, normalize_inbound_headers=False)
        self.c = H2Connection(H2Configuration(client_side=True, **cfg))
        self.s = H2Connection(H2Configuration(client_side=False, **cfg))
        for conn in (self.c, self.s):
            self._vary_huffman(conn)
        self.chunks = {"c": [], "s": []}
        self.order = []
        self.streams = {}          # sid -> Stream
        self.completed = []        # streams in completion order
        self.reset_order = []
        self.frame_size_changed = False
        self.noise_left = 40
        self.settings_sent = {"c": 0, "s": 0}
        self.settings_acked = {"c": 0, "s": 0}

    # --- plan -----------------------------------------------------------------------------------

    def value(self, lo, hi):
        r = self.r
        n = r.randint(lo, hi)
        rare = r.random() < 0.2
        chars = VALUE_CHARS + (VALUE_RARE * 3 if rare else "")
        s = "".join(r.choices(chars, k=n)).strip(" ")
        if r.random() < 0.03:
            s = "caf\u00e9 \u65e5\u672c" + s  # UTF-8 in a value
        return s

    def name(self):
        r = self.r
        if r.random() < 0.3:
            return r.choice(COMMON_NAMES)
        chars = NAME_CHARS + (NAME_EXTRA if r.random() < 0.2 else "")
        return "x-" + "".join(r.choices(chars, k=r.randint(1, 24)))

    def fields(self, maxn, big=True):
        r = self.r
        out = []
        names = []
        for _ in range(r.randint(0, maxn)):
            if names and r.random() < 0.15:
                n = r.choice(names)  # a repeated name
            else:
                n = self.name()
                names.append(n)
            v = self.value(0, r.choice([8, 30, 100]))
            # (python-hpack writes literals with incremental indexing or never indexed, nothing else:
            # literals without indexing are in the hand-made tests)
            out.append(NeverIndexedHeaderTuple(n, v) if r.random() < 0.1 else (n, v))
        if big and r.random() < self.p["p_big_headers"]:
            # a block over 16 KiB: HEADERS then CONTINUATION
            for i in range(r.randint(2, 3)):
                out.append(("x-big-%d" % i, self.value(9000, 11000)))
        return out

    def body(self):
        r = self.r
        x = r.random()
        if x < 0.3:
            n = 0
        elif x < 0.75:
            n = r.randint(1, 1024)
        elif x < 1 - self.p["p_large_body"]:
            n = int(math.exp(r.uniform(math.log(1025), math.log(16 * 1024))))
        else:
            n = r.randint(16 * 1024, max(16 * 1024, self.p["max_body"]))
        if r.random() < 0.5:
            return r.randbytes(n)
        return r.randbytes(n).translate(TEXT)

    def plan_request(self, s, n):
        r, p = self.r, self.p
        s.method = r.choice(METHODS)
        s.path = "/c%d/s%d" % (self.index, n) + (("?q=" + self.value(1, 20).replace(" ", "+").replace("#", "%23"))
                                                 if r.random() < 0.3 else "")
        s.scheme = r.choice(["https", "https", "http"])
        host = r.choice(["api.example.com", "10.0.0.1:8080", "svc.ns.svc.cluster.local", "a.b"])
        fields = self.fields(r.choice([0, 3, 8, 20]))
        fields = [f for f in fields if text(f[0]) != "host"]
        mode = r.random()
        if mode < 0.8:
            s.authority = host
        elif mode < 0.9:
            s.authority = host
            fields.insert(r.randint(0, len(fields)), ("host", host))
        else:
            s.authority = None
            fields.insert(r.randint(0, len(fields)), ("host", host))
        s.req_body = self.body() if s.method not in ("GET", "OPTIONS") or r.random() < 0.1 else b""
        if s.req_body and r.random() < 0.3:
            fields.append(("content-length", str(len(s.req_body))))
        s.req_fields = fields
        if p["request_trailers"] and r.random() < p["p_trailers"]:
            s.req_trailers = [("x-req-trailer-%d" % i, self.value(1, 20)) for i in range(r.randint(1, 3))]
        self.plan_response(s)
        if r.random() < p["p_reset"]:
            s.reset_by = r.choice("cs")
        elif r.random() < p["p_push"]:
            s.pushes = r.randint(1, 3)

    def plan_response(self, s):
        r, p = self.r, self.p
        s.status = r.choice(STATUSES) if r.random() < 0.8 else r.randint(200, 599)
        if p["informational"] and r.random() < 0.1:
            s.informational = [r.choice([100, 102, 103]) for _ in range(r.randint(1, 2))]
        s.resp_fields = self.fields(r.choice([0, 2, 6, 15]))
        s.resp_body = b"" if s.status in (204, 304) else self.body()
        if s.resp_body and r.random() < 0.3:
            s.resp_fields.append(("content-length", str(len(s.resp_body))))
        if r.random() < p["p_trailers"]:
            s.resp_trailers = [(r.choice(["grpc-status", "grpc-message", "x-checksum", "server-timing"]) + ("" if i == 0 else "-%d" % i),
                                self.value(1, 30)) for i in range(r.randint(1, 3))]

    # --- sending --------------------------------------------------------------------------------

    def _vary_huffman(self, conn):
        """h2 always Huffman-codes literals; a share (p_raw_literals) of the blocks is sent raw instead."""
        orig = conn.encoder.encode
        r = self.r

        def encode(headers, huffman=True):
            return orig(headers, huffman=not (r.random() < self.p["p_raw_literals"]))
        conn.encoder.encode = encode

    def max_frame(self, side):
        return getattr(self, side).max_outbound_frame_size

    def open_request(self, s):
        r = self.r
        sid = self.c.get_next_available_stream_id()
        s.sid = sid
        self.streams[sid] = s
        pseudo = [(":method", s.method), (":path", s.path), (":scheme", s.scheme)]
        if s.authority is not None:
            pseudo.append((":authority", s.authority))
        if r.random() < 0.3:
            r.shuffle(pseudo)
        end = not s.req_body and not s.req_trailers
        kw = {}
        small = sum(len(text(n)) + len(text(v)) for n, v in s.req_fields) < 4000
        if small and r.random() < self.p["p_priority"]:
            kw = dict(priority_weight=r.randint(1, 256), priority_depends_on=0, priority_exclusive=r.random() < 0.5)
        self.c.send_headers(sid, pseudo + s.req_fields, end_stream=end, **kw)
        s.opened = True
        if end:
            s.req_done = True

    def data_piece(self, side, s, remaining):
        conn = getattr(self, side)
        window = conn.local_flow_control_window(s.sid)
        mf = conn.max_outbound_frame_size
        pad = None
        if self.r.random() < self.p["p_pad"]:
            pad = self.r.randint(0, 255)
        if remaining == 0:
            if pad is not None and window < pad + 1:
                pad = None
            return 0, pad
        room = min(window, mf) - ((pad + 1) if pad is not None else 0)
        if room <= 0:
            return None, None
        n = min(remaining, room, self.r.choice([1, 100, 1000, 4096, 16384, 1 << 20]))
        return n, pad

    def send_body(self, side, s):
        """One DATA frame of a body (the last one ends the stream unless trailers follow)."""
        conn = getattr(self, side)
        if side == "c":
            body, sent, trailers = s.req_body, s.req_sent, s.req_trailers
        else:
            body, sent, trailers = s.resp_body, s.resp_sent, s.resp_trailers
        remaining = len(body) - sent
        if remaining == 0:
            # nothing (left) to send: end the stream with trailers or an empty DATA frame
            if trailers:
                conn.send_headers(s.sid, trailers, end_stream=True)
            else:
                n, pad = self.data_piece(side, s, 0)
                if n is None:
                    return False
                conn.send_data(s.sid, b"", end_stream=True, pad_length=pad)
            self._done(side, s)
            return True
        n, pad = self.data_piece(side, s, remaining)
        if not n:
            return False
        last = n == remaining
        end = last and not trailers and self.r.random() < 0.8
        conn.send_data(s.sid, body[sent:sent + n], end_stream=end, pad_length=pad)
        if side == "c":
            s.req_sent += n
        else:
            s.resp_sent += n
        if end:
            self._done(side, s)
        return True

    def _done(self, side, s):
        if side == "c":
            s.req_done = True
        else:
            s.resp_done = True

    def respond(self, s):
        r = self.r
        if s.info_sent < len(s.informational):
            self.s.send_headers(s.sid, [(":status", str(s.informational[s.info_sent]))])
            s.info_sent += 1
            return
        end = not s.resp_body and not s.resp_trailers and r.random() < 0.7
        self.s.send_headers(s.sid, [(":status", str(s.status))] + s.resp_fields, end_stream=end)
        s.resp_started = True
        if end:
            s.resp_done = True

    def push(self, parent, n):
        r = self.r
        s = Stream()
        s.pushed = True
        s.parent = parent.sid
        s.method = "GET"
        s.path = "/c%d/push%d-%d" % (self.index, parent.sid, n)
        s.scheme = parent.scheme
        s.authority = parent.authority or "pushed.example"
        s.req_fields = self.fields(r.choice([0, 2, 4]), big=False)  # h2 cannot split a PUSH_PROMISE
        s.req_fields = [f for f in s.req_fields if text(f[0]) != "host"]
        self.plan_response(s)
        s.informational = []
        sid = self.s.get_next_available_stream_id()
        s.sid = sid
        self.streams[sid] = s
        self.s.push_stream(parent.sid, sid, [(":method", "GET"), (":path", s.path), (":authority", s.authority),
                                             (":scheme", s.scheme)] + s.req_fields)
        s.opened = True
        s.req_done = True
        s.server_seen = True
        if r.random() < self.p["p_reset"]:
            s.reset_by = r.choice("cs")  # a push cancelled by the client, or given up by the server

    def reset(self, s):
        # quiescent first: nothing of this stream may be in flight when its RST_STREAM goes out, or
        # the peer answers what follows with a second one
        self.settle()
        side = s.reset_by
        getattr(self, side).reset_stream(s.sid, error_code=self.r.choice([ErrorCodes.CANCEL, ErrorCodes.INTERNAL_ERROR,
                                                                          ErrorCodes.REFUSED_STREAM]))
        s.reset = True
        s.response_complete = s.resp_done
        self.reset_order.append(s)
        self.flush(side)
        self.settle()

    def noise(self):
        r = self.r
        side = r.choice("cs")
        conn = getattr(self, side)
        kind = r.random()
        self.noise_left -= 1
        if kind < 0.3:
            conn.ping(r.randbytes(8))
        elif kind < 0.55:
            open_ = [s for s in self.streams.values() if s.active() and s.server_seen and s.sid in conn.streams]
            if open_ and r.random() < 0.5:
                conn.increment_flow_control_window(r.randint(1, 65535), stream_id=r.choice(open_).sid)
            else:
                conn.increment_flow_control_window(r.randint(1, 65535))
        elif kind < 0.85:
            # one change at a time: h2 applies every pending change at the first ACK it gets, and
            # hpack refuses a size update above the current setting even when a later one follows
            peer = self.s if side == "c" else self.c
            if self.settings_sent[side] == self.settings_acked[side] and not peer.encoder.table_size_changes:
                self.settings_sent[side] += 1
                conn.update_settings({SettingCodes.HEADER_TABLE_SIZE: r.choice([0, 64, 256, 1024, 4096, 4096, 8192, 65536])})
        else:
            open_ = [s for s in self.streams.values() if s.active() and not s.pushed]
            if open_:
                self.c.prioritize(r.choice(open_).sid, weight=r.randint(1, 256), depends_on=0, exclusive=False)

    # --- the wire -------------------------------------------------------------------------------

    def pad_headers(self, data, peer):
        """HEADERS and PUSH_PROMISE frames get padding here (h2 pads only DATA)."""
        if self.r.random() >= self.p["p_pad"]:
            return data
        out = bytearray()
        at = 0
        if data.startswith(PREFACE):
            out += PREFACE
            at = len(PREFACE)
        limit = min(16384, peer.local_settings.max_frame_size)
        while at < len(data):
            f, length = Frame.parse_frame_header(memoryview(data[at:at + 9]))
            whole = data[at:at + 9 + length]
            if isinstance(f, (HeadersFrame, PushPromiseFrame)) and self.r.random() < 0.6:
                f.parse_body(memoryview(data[at + 9:at + 9 + length]))
                pad = self.r.randint(0, 255)
                if length + pad + (0 if "PADDED" in f.flags else 1) <= limit:
                    f.flags.add("PADDED")
                    f.pad_length = pad
                    whole = f.serialize()
            out += whole
            at += 9 + length
        if at != len(data):
            raise Generated("data_to_send ended inside a frame")
        return bytes(out)

    def flush(self, side):
        conn, peer = (self.c, self.s) if side == "c" else (self.s, self.c)
        data = conn.data_to_send()
        if not data:
            return False
        data = self.pad_headers(data, peer)
        self.chunks[side].append(data)
        self.order.append(side)
        # frame by frame: h2 applies an acknowledged SETTINGS_MAX_FRAME_SIZE to the frames of the
        # next receive_data only
        for frame in frames_of(data):
            for e in peer.receive_data(frame):
                self.on_event(side, peer, e)
        return True

    def settle(self):
        while self.flush("c") | self.flush("s"):
            pass

    def on_event(self, sender, receiver, e):
        st = self.streams.get(getattr(e, "stream_id", None))
        if isinstance(e, RequestReceived):
            st.got["request_headers"] = e.headers
            st.server_seen = True
        elif isinstance(e, PushedStreamReceived):
            ps = self.streams[e.pushed_stream_id]
            ps.got["request_headers"] = e.headers
            ps.got["request_ended"] = True
        elif isinstance(e, InformationalResponseReceived):
            st.got["informational"].append(e.headers)
        elif isinstance(e, ResponseReceived):
            st.got["response_headers"] = e.headers
        elif isinstance(e, TrailersReceived):
            st.got["request_trailers" if sender == "c" else "response_trailers"] = e.headers
        elif isinstance(e, DataReceived):
            st.got["request_body" if sender == "c" else "response_body"] += e.data
            receiver.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
        elif isinstance(e, StreamEnded):
            st.got["request_ended" if sender == "c" else "response_ended"] = True
            if st.got["request_ended"] and st.got["response_ended"]:
                self.completed.append(st)
        elif isinstance(e, SettingsAcknowledged):
            self.settings_acked["s" if sender == "c" else "c"] += 1
        elif isinstance(e, StreamReset):
            if st is None or not st.reset:
                raise Generated("unplanned reset of stream %s" % getattr(e, "stream_id", None))

    # --- the conversation -----------------------------------------------------------------------

    def run(self):
        r, p = self.r, self.p
        lo, hi = p["min_streams"], p["max_streams"]
        n = int(round(math.exp(r.uniform(math.log(lo), math.log(hi + 0.999)) ))) if hi > lo else lo
        n = max(lo, min(hi, n))
        plans = []
        for i in range(n):
            s = Stream()
            self.plan_request(s, i)
            plans.append(s)
        plans.reverse()
        concurrency = r.choice([1, 2, 4, 10, 100])

        for side in "cs":
            conn = getattr(self, side)
            conn.initiate_connection()
            self.settings_sent[side] += 1
            # (sent with the first: acknowledged at once, which h2 does anyway)
            if r.random() < p["p_table_size"]:
                conn.update_settings({SettingCodes.HEADER_TABLE_SIZE: r.choice([0, 256, 1024, 8192, 65536])})
                self.settings_sent[side] += 1
            if r.random() < p["p_frame_size"]:
                conn.update_settings({SettingCodes.MAX_FRAME_SIZE: r.choice([16385, 20000, 32768, 65536])})
                self.settings_sent[side] += 1
                self.frame_size_changed = True
            self.flush(side)

        idle = 0
        for _ in range(2_000_000):
            live = [s for s in self.streams.values() if s.active()]
            if not plans and not live:
                break
            actions = []
            if plans and sum(1 for s in live if not s.pushed) < concurrency and \
                    self.c.open_outbound_streams < min(100, self.c.remote_settings.max_concurrent_streams):
                actions.append((3, "open"))
            for s in live:
                if s.reset_by and r.random() < 0.3:
                    actions.append((2, ("reset", s)))
                if not s.req_done and not s.pushed:
                    actions.append((2, ("req", s)))
                if s.server_seen and not s.resp_done:
                    if not s.resp_started:
                        actions.append((2, ("respond", s)))
                    else:
                        actions.append((2, ("resp", s)))
                    if s.pushes_made < s.pushes and not s.pushed and \
                            self.s.open_outbound_streams < min(90, self.s.remote_settings.max_concurrent_streams):
                        actions.append((1, ("push", s)))
            if self.noise_left > 0 and r.random() < p["p_noise"] * 10:
                actions.append((1, "noise"))
            actions.append((3, "flush c"))
            actions.append((3, "flush s"))
            weights = [w for w, _ in actions]
            (_, a), = r.choices(actions, weights)
            progressed = True
            if a == "open":
                self.open_request(plans.pop())
            elif a == "noise":
                self.noise()
            elif a == "flush c":
                progressed = self.flush("c")
            elif a == "flush s":
                progressed = self.flush("s")
            else:
                kind, s = a
                if kind == "reset":
                    self.reset(s)
                elif kind == "req":
                    progressed = self.send_body("c", s)
                elif kind == "respond":
                    self.respond(s)
                elif kind == "resp":
                    progressed = self.send_body("s", s)
                elif kind == "push":
                    s.pushes_made += 1
                    self.push(s, s.pushes_made)
            idle = 0 if progressed else idle + 1
            if idle > 10000:
                raise Generated("no progress")
        else:
            raise Generated("did not finish")
        self.settle()
        if r.random() < p["p_goaway"]:
            side = r.choice("cs")
            getattr(self, side).close_connection(error_code=0)
            self.flush(side)
            self.settle()
        return self.result()

    def result(self):
        # every stream: as sent, as received
        rst = {}
        for side in "cs":
            for chunk in self.chunks[side]:
                for sid in rst_streams(chunk):
                    rst[sid] = rst.get(sid, 0) + 1
        resets = set(s.sid for s in self.reset_order)
        if set(rst) != resets or any(v != 1 for v in rst.values()):
            raise Generated("RST_STREAM frames %r for the resets %r" % (rst, resets))
        exchanges = []
        for s in self.completed + self.reset_order:
            g = s.got
            if not s.reset:
                self.check(s)
            req = [(text(n), text(v)) for n, v in (g["request_headers"] or [])]
            resp = [(text(n), text(v)) for n, v in (g["response_headers"] or [])]
            pseudo = dict((n, v) for n, v in req if n.startswith(":"))
            exchanges.append(dict(
                stream=s.sid, pushed=s.pushed, reset=s.reset, response_complete=s.response_complete or not s.reset,
                method=pseudo.get(":method", s.method), path=pseudo.get(":path", s.path),
                authority=pseudo.get(":authority", s.authority), scheme=pseudo.get(":scheme", s.scheme),
                request_headers=[[n, v] for n, v in req if not n.startswith(":")],
                request_trailers=[[text(n), text(v)] for n, v in g["request_trailers"]],
                request_body=b64(g["request_body"]),
                status=int(dict(resp).get(":status", s.status)),
                response_headers=[[n, v] for n, v in resp if not n.startswith(":")],
                response_trailers=[[text(n), text(v)] for n, v in g["response_trailers"]],
                response_body=b64(g["response_body"]),
                informational=[int(dict((text(n), text(v)) for n, v in h)[":status"]) for h in g["informational"]],
            ))
        return dict(seed=self.seed, c_chunks=[b64(c) for c in self.chunks["c"]],
                    s_chunks=[b64(c) for c in self.chunks["s"]], order="".join(self.order),
                    frame_size_changed=self.frame_size_changed, exchanges=exchanges,
                    c_blocks=header_blocks(self.chunks["c"]) if self.p["blocks"] else None,
                    s_blocks=header_blocks(self.chunks["s"]) if self.p["blocks"] else None)

    def check(self, s):
        """What the peer received is what was planned (the generator checks itself)."""
        g = s.got
        if bytes(g["request_body"]) != s.req_body or bytes(g["response_body"]) != s.resp_body:
            raise Generated("stream %d: bodies differ" % s.sid)
        if str(s.status) != text(dict(g["response_headers"])[b":status"]):
            raise Generated("stream %d: status differs" % s.sid)
        sent = [(n, v) for n, v in ((text(f[0]), text(f[1])) for f in s.req_fields)]
        got = [(text(n), text(v)) for n, v in g["request_headers"] if not text(n).startswith(":")]
        if [n for n, _ in sent] != [n for n, _ in got]:
            raise Generated("stream %d: request header names differ: %r %r" % (s.sid, sent, got))


def frames_of(chunk):
    """The frames of a chunk (the client preface with the first)."""
    at = len(PREFACE) if chunk.startswith(PREFACE) else 0
    start = 0
    while at < len(chunk):
        length = int.from_bytes(chunk[at:at + 3], "big")
        at += 9 + length
        yield chunk[start:at]
        start = at


def header_blocks(chunks):
    """The header blocks of one direction, in order, with what each HPACK representation in them
    does: for the tests that start reading a connection part way (which dynamic-table entries a
    reader that starts at a given frame can know).

    A block: frame (index of its HEADERS or PUSH_PROMISE among the frames of the direction; the
    preface is not a frame), last (index of its END_HEADERS frame), stream, promised (0 but for
    PUSH_PROMISE), ops: [kind, index, insert] per representation, kind 0 indexed field, 1 literal
    with an indexed name, 2 literal with a new name, 3 table size update (index: the new size);
    insert: the size of the entry it adds to the dynamic table (name + value + 32), 0 for none."""
    decoder = Decoder()
    decoder.max_allowed_table_size = 1 << 31
    decoder.max_header_list_size = 1 << 31
    blocks = []
    current = None
    index = 0
    for chunk in chunks:
        for frame in frames_of(chunk):
            if frame.startswith(PREFACE):
                frame = frame[len(PREFACE):]
            length = int.from_bytes(frame[0:3], "big")
            ftype, flags = frame[3], frame[4]
            sid = int.from_bytes(frame[5:9], "big") & 0x7FFFFFFF
            payload = frame[9:9 + length]
            if ftype in (1, 5):
                pad = 0
                if flags & 0x8:
                    pad = payload[0]
                    payload = payload[1:len(payload) - pad]
                promised = 0
                if ftype == 1 and flags & 0x20:
                    payload = payload[5:]
                if ftype == 5:
                    promised = int.from_bytes(payload[0:4], "big") & 0x7FFFFFFF
                    payload = payload[4:]
                current = dict(frame=index, last=index, stream=sid, promised=promised, data=bytearray(payload))
            elif ftype == 9:
                current["data"] += payload
                current["last"] = index
            if ftype in (1, 5, 9) and flags & 0x4:
                data = bytes(current.pop("data"))
                headers = decoder.decode(data, raw=True)
                current["ops"] = list(hpack_ops(data, headers))
                blocks.append(current)
                current = None
            index += 1
    return blocks


def hpack_ops(data, headers):
    fields = iter(headers)
    at = 0
    while at < len(data):
        b = data[at]
        if b & 0x80:
            idx, n = decode_integer(data[at:], 7)
            at += n
            next(fields)
            yield [0, idx, 0]
            continue
        if b & 0xE0 == 0x20:
            size, n = decode_integer(data[at:], 5)
            at += n
            yield [3, size, 0]
            continue
        incremental = bool(b & 0x40)
        idx, n = decode_integer(data[at:], 6 if incremental else 4)
        at += n
        if idx == 0:
            at = skip_string(data, at)
        at = skip_string(data, at)
        name, value = next(fields)
        yield [1 if idx else 2, idx, len(name) + len(value) + 32 if incremental else 0]


def skip_string(data, at):
    length, n = decode_integer(data[at:], 7)
    return at + n + length


def rst_streams(chunk):
    at = len(PREFACE) if chunk.startswith(PREFACE) else 0
    while at < len(chunk):
        f, length = Frame.parse_frame_header(memoryview(chunk[at:at + 9]))
        if isinstance(f, RstStreamFrame):
            yield f.stream_id
        at += 9 + length


def main():
    if len(sys.argv) > 1:
        params = json.loads(sys.argv[1])
    else:
        raw = sys.stdin.read().strip()
        params = json.loads(raw) if raw else {}
    p = dict(DEFAULTS)
    unknown = set(params) - set(p)
    if unknown:
        raise SystemExit("unknown parameters: %s" % ", ".join(sorted(unknown)))
    p.update(params)
    out = []
    for i in range(p["count"]):
        seed = p["seed"] * 100003 + i
        try:
            out.append(Conversation(i, seed, p).run())
        except Exception as e:
            traceback.print_exc()
            raise SystemExit("conversation %d (seed %d): %s: %s" % (i, seed, type(e).__name__, e))
    json.dump(dict(seed=p["seed"], conversations=out), sys.stdout, separators=(",", ":"))


if __name__ == "__main__":
    main()
