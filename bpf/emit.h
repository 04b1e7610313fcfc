/* Events into the ring buffer: wakeups in batches, data events filled in the ring or through a
 * per-CPU scratch event, and a call's bytes cut into chunks whose positions let user space see
 * every gap. */
#ifndef COLLECTOR_EMIT_H
#define COLLECTOR_EMIT_H

#include "maps.h"
#include "selection.h"

/* Copies user memory straight into a ring-buffer record (kernel 6.16 and later). Weak: on an older
 * kernel libbpf leaves it unresolved. */
extern int bpf_probe_read_user_dynptr(struct bpf_dynptr *dptr, __u64 off, __u64 size,
				      const void *unsafe_ptr__ign) __weak __ksym;
#ifndef COLLECTOR_COMPAT
#define has_direct_copy() (bpf_probe_read_user_dynptr != NULL && !settings.direct_copy_off)
/* Data events are reserved at their exact size in the ring buffer and filled there (ring-buffer
 * dynptrs, 5.19): with the kfunc above in one copy, else in power-of-two pieces. Before that they
 * are built in a per-CPU scratch event and copied into the ring. */
#define copies_into_ring() (has_direct_copy() || settings.ringbuf_dynptr)
#else
#define has_direct_copy() 0
#define copies_into_ring() 0
#endif
#define DATA_HEADER_SIZE offsetof(struct data_event, data)

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct data_event);
} scratch SEC(".maps") SHARED_MAP;

/* Wake user space in batches: only when this event makes the waiting data cross wakeup_bytes.
 * A wakeup (an irq_work and a context switch) costs far more than the copy; waking on every
 * event while a busy reader lags would multiply it. The reader also polls every 10 ms, so data
 * below the threshold waits at most that long. */
static __always_inline __u64 ringbuf_flags(__u64 size)
{
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	return avail < settings.wakeup_bytes && avail + size >= settings.wakeup_bytes ? BPF_RB_FORCE_WAKEUP
										     : BPF_RB_NO_WAKEUP;
}

/* The same, for a record already reserved (it is counted in the available data). */
static __always_inline __u64 ringbuf_flags_reserved(__u64 size)
{
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	return avail < settings.wakeup_bytes + size && avail >= settings.wakeup_bytes ? BPF_RB_FORCE_WAKEUP
										     : BPF_RB_NO_WAKEUP;
}

/* The fixed part of a data event of n bytes at offset c->off of the call. */
static __always_inline void fill_data_header(struct data_event *e, const struct emit_ctx *c, __u64 n)
{
	e->header.timestamp_ns = bpf_ktime_get_ns();
	e->header.type = EVENT_DATA;
	e->header.tgid = c->tgid;
	e->header.fd = c->fd;
	e->header.generation = c->generation;
	e->position = c->position + c->off;
	e->call_bytes = c->call_bytes;
	e->data_len = n;
	e->direction = c->direction;
	e->source = c->source;
	__builtin_memset(e->pad, 0, sizeof(e->pad));
	e->tls_ctx = c->tls_ctx;
}

/* Copies len (at most MAX_DATA_SIZE) bytes of user memory into a ring-buffer record at off, without
 * the kfunc: bpf_dynptr_data hands out a constant-sized window, so the copy goes in the
 * power-of-two pieces that make up len. No scratch: on a preemptible kernel a per-CPU buffer can
 * be taken over by another task's probe in the middle of a copy. */
static __always_inline long copy_user_pieces(struct bpf_dynptr *dp, __u64 off, __u64 len, __u64 src)
{
#pragma unroll
	for (int bit = 14; bit >= 0; bit--) {
		const __u32 piece = 1u << bit;
		if (len & piece) {
			void *p = bpf_dynptr_data(dp, off, piece);
			if (!p)
				return -1;
			if (bpf_probe_read_user(p, piece, (const void *)src) != 0)
				return -1;
			off += piece;
			src += piece;
		}
	}
	return 0;
}

/* One data event of n bytes from the segments, reserved at its size in the ring buffer and filled
 * there (needs copies_into_ring()). */
static __always_inline void emit_direct(const struct emit_ctx *c, const struct segments *segs, __u64 n)
{
	struct bpf_dynptr dp;
	__u64 size = DATA_HEADER_SIZE + n;
	if (bpf_ringbuf_reserve_dynptr(&events, size, 0, &dp) != 0) {
		bpf_ringbuf_discard_dynptr(&dp, 0);
		count_drop(DROP_RINGBUF_FULL, 1);
		count_drop(DROP_RINGBUF_FULL_BYTES, n);
		return;
	}
	struct data_event *e = bpf_dynptr_data(&dp, 0, DATA_HEADER_SIZE);
	if (!e) {
		bpf_ringbuf_discard_dynptr(&dp, 0);
		return;
	}
	fill_data_header(e, c, n);
#pragma unroll
	for (int i = 0; i < MAX_SEGMENTS; i++) {
		__u64 len = segs->len[i];
		if (len == 0)
			continue;
		__u64 off = DATA_HEADER_SIZE + segs->start[i];
		long err = has_direct_copy()
				   ? bpf_probe_read_user_dynptr(&dp, off, len, (const void *)segs->base[i])
				   : copy_user_pieces(&dp, off, len & (2 * MAX_DATA_SIZE - 1), segs->base[i]);
		if (err != 0) {
			bpf_ringbuf_discard_dynptr(&dp, 0);
			count_drop(DROP_READ_FAILED_BYTES, n);
			return;
		}
	}
	bpf_ringbuf_submit_dynptr(&dp, ringbuf_flags_reserved(size));
}

static __always_inline __u32 chunk_limit(void)
{
	__u32 limit = settings.chunk_size;
	return limit > MAX_DATA_SIZE ? MAX_DATA_SIZE : limit;
}

/* One chunk of emit_buffer; a bpf_loop callback so that the verifier walks it once. */
static long emit_chunk(__u32 index, void *unused)
{
	struct thread_state *t = thread_state(0);
	if (!t)
		return 1;
	struct emit_ctx *c = &t->emit;
	if (c->off >= c->len)
		return 1;
	__u64 n = c->len - c->off;
	__u32 limit = chunk_limit();
	if (n > limit)
		n = limit;
	if (copies_into_ring()) {
		struct segments one = {.base = {c->buf + c->off}, .len = {n}};
		emit_direct(c, &one, n);
		c->off += n;
		return 0;
	}
	__u32 zero = 0;
	struct data_event *e = bpf_map_lookup_elem(&scratch, &zero);
	if (!e)
		return 1;
	long err;
	if (n >= MAX_DATA_SIZE) {
		n = MAX_DATA_SIZE;
		err = bpf_probe_read_user(e->data, MAX_DATA_SIZE, (const void *)(c->buf + c->off));
	} else {
		n &= MAX_DATA_SIZE - 1;
		err = bpf_probe_read_user(e->data, n, (const void *)(c->buf + c->off));
	}
	if (err != 0) {
		count_drop(DROP_READ_FAILED_BYTES, n);
		c->off += n;
		return 0;
	}
	fill_data_header(e, c, n);
	__u64 size = offsetof(struct data_event, data) + n;
	if (size > sizeof(*e))
		size = sizeof(*e);
	if (bpf_ringbuf_output(&events, e, size, ringbuf_flags(size)) != 0) {
		count_drop(DROP_RINGBUF_FULL, 1);
		count_drop(DROP_RINGBUF_FULL_BYTES, n);
	}
	c->off += n;
	return 0;
}

/* Sends [buf, buf+len) as data events of at most chunk_size bytes, at most max_chunks_per_call
 * of them; the rest of the call is a gap that user space sees from the positions. */
static __always_inline void emit_buffer(__u32 tgid, __u32 fd, __u32 generation, __u64 position,
					__u64 buf, __u64 len, __u64 call_bytes, __u8 direction,
					__u8 source, __u64 tls_ctx)
{
	if (len == 0)
		return; /* an empty iovec entry: nothing to send */
	struct thread_state *t = thread_state(0);
	if (!t)
		return;
	struct emit_ctx *c = &t->emit;
	c->buf = buf;
	c->len = len;
	c->off = 0;
	c->position = position;
	c->call_bytes = call_bytes;
	c->tgid = tgid;
	c->fd = fd;
	c->generation = generation;
	c->direction = direction;
	c->source = source;
	c->tls_ctx = tls_ctx;
	if (copies_into_ring() && len <= chunk_limit() && settings.max_chunks_per_call > 0) {
		/* the common case, one chunk: no loop */
		struct segments one = {.base = {buf}, .len = {len}};
		emit_direct(c, &one, len);
		return;
	}
	__u32 chunks = settings.max_chunks_per_call;
	if (chunks > MAX_CHUNKS_LIMIT)
		chunks = MAX_CHUNKS_LIMIT;
	LOOP(chunks, emit_chunk, NULL);
	if (c->off < len)
		count_drop(DROP_BEYOND_CAPTURE_BYTES, len - c->off);
}

#endif
