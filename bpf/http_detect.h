/* Whether a plaintext connection carries HTTP, judged from its first bytes in the kernel so that
 * other protocols cost no ring-buffer traffic. */
#ifndef COLLECTOR_HTTP_DETECT_H
#define COLLECTOR_HTTP_DETECT_H

#include "maps.h"

static __always_inline int is_token_char(__u8 c)
{
	return (c >= 'A' && c <= 'Z') || c == '-' || c == '_';
}

/* Whether 9 bytes can be an HTTP/2 frame header: a known type with only its flags, no reserved
 * bit, a length within max_len, and the stream rules of its type (RFC 9113 §6). */
static __always_inline int is_h2_frame_header(const __u8 *h, __u32 max_len)
{
	__u32 len = ((__u32)h[0] << 16) | ((__u32)h[1] << 8) | h[2];
	__u8 type = h[3], flags = h[4];
	int stream0 = (h[5] & 0x7f) == 0 && h[6] == 0 && h[7] == 0 && h[8] == 0;
	if (len > max_len || (h[5] & 0x80))
		return 0;
	switch (type) {
	case 0: /* DATA */
		return !stream0 && !(flags & ~0x09);
	case 1: /* HEADERS */
		return !stream0 && !(flags & ~0x2d);
	case 2: /* PRIORITY */
		return !stream0 && flags == 0 && len == 5;
	case 3: /* RST_STREAM */
		return !stream0 && flags == 0 && len == 4;
	case 4: /* SETTINGS */
		return stream0 && !(flags & ~0x01) && len % 6 == 0 && (!(flags & 1) || len == 0);
	case 5: /* PUSH_PROMISE */
		return !stream0 && !(flags & ~0x0c);
	case 6: /* PING */
		return stream0 && !(flags & ~0x01) && len == 8;
	case 7: /* GOAWAY */
		return stream0 && flags == 0 && len >= 8;
	case 8: /* WINDOW_UPDATE */
		return flags == 0 && len == 4;
	case 9: /* CONTINUATION */
		return !stream0 && !(flags & ~0x04);
	}
	return 0;
}

/* Decides from a connection's first bytes whether it carries HTTP.
 * Returns 1 when it may be HTTP (a method token or "HTTP/"; the HTTP/2 preface begins "PRI "; a
 * server that writes first sends a SETTINGS frame; a connection first seen mid-stream may be in
 * the middle of HTTP/2, whose writes begin with a frame), 0 when it cannot be, and leaves the
 * decision open (-1) when too few bytes were seen. TLS records are marked as such, not counted. */
static __always_inline int judge_first_bytes(struct conn_state *st, const void *buf, __u64 len)
{
	if (st->flags & (CONN_HTTP | CONN_NOT_HTTP))
		return (st->flags & CONN_HTTP) ? 1 : 0;
	__u8 head[9] = {};
	if (len < 4)
		return -1;
	if (bpf_probe_read_user(head, len >= 9 ? 9 : 4, buf) != 0)
		return -1;
	if (head[0] == 0x16 && head[1] == 0x03) {
		/* A TLS handshake: its plaintext, if any, comes from the library probes. */
		st->flags |= CONN_NOT_HTTP | CONN_TLS;
		return 0;
	}
	if (head[0] >= 'A' && head[0] <= 'Z' && is_token_char(head[1]) &&
	    (is_token_char(head[2]) || head[2] == ' ') &&
	    (is_token_char(head[3]) || head[3] == ' ' || head[3] == '/')) {
		st->flags |= CONN_HTTP;
		return 1;
	}
	if (len >= 9) {
		/* HTTP/2 without its preface: a server's SETTINGS, or any frame mid-stream */
		int preexisting = st->flags & CONN_PREEXISTING;
		/* (a second frame header in the same call is not checked: the verifier's walk of
		 * recvmmsg, which judges every buffer, passes its limit; user space gives a joined
		 * connection back to HTTP/1 when its frames do not hold) */
		if ((head[3] == 4 || preexisting) &&
		    is_h2_frame_header(head, preexisting ? (1u << 20) : 16384)) {
			st->flags |= CONN_HTTP;
			return 1;
		}
	}
	/* A connection first seen mid-stream may be in the middle of a body: skip this call, and
	 * judge again at the next one, which may start a message. */
	if (st->flags & CONN_PREEXISTING)
		return 0;
	st->flags |= CONN_NOT_HTTP;
	return 0;
}
#endif
