/* Prints the size and field offsets of the structs in bpf/collector.h, as the C compiler lays
 * them out, so that tests/Collector.Tests/EventLayoutTests.cs can compare them with C#. */
#include <stddef.h>
#include <stdio.h>
#include <linux/types.h>
#include "collector.h"

#define FIELD(s, f) printf("%s.%s %zu\n", #s, #f, offsetof(struct s, f))
#define SIZE(s) printf("%s %zu\n", #s, sizeof(struct s))

int main(void)
{
	SIZE(event_header);
	FIELD(event_header, timestamp_ns);
	FIELD(event_header, type);
	FIELD(event_header, tgid);
	FIELD(event_header, fd);
	FIELD(event_header, generation);
	SIZE(open_event);
	FIELD(open_event, family);
	FIELD(open_event, local_port);
	FIELD(open_event, remote_port);
	FIELD(open_event, origin);
	FIELD(open_event, local_addr);
	FIELD(open_event, remote_addr);
	FIELD(open_event, comm);
	printf("data_event_header %zu\n", offsetof(struct data_event, data));
	FIELD(data_event, position);
	FIELD(data_event, call_bytes);
	FIELD(data_event, data_len);
	FIELD(data_event, direction);
	FIELD(data_event, source);
	FIELD(data_event, tls_ctx);
	FIELD(data_event, data);
	SIZE(close_event);
	FIELD(close_event, egress_bytes);
	FIELD(close_event, ingress_bytes);
	FIELD(close_event, flags);
	SIZE(bind_event);
	FIELD(bind_event, tls_ctx);
	SIZE(collector_config);
	FIELD(collector_config, collector_tgid);
	FIELD(collector_config, host_mnt_ns);
	FIELD(collector_config, host_pid_ns);
	FIELD(collector_config, ringbuf_dynptr);
	FIELD(collector_config, direct_copy_off);
	FIELD(collector_config, capture_plain);
	FIELD(collector_config, capture_tls);
	FIELD(collector_config, probe_all_pid);
	FIELD(collector_config, filter_pids);
	FIELD(collector_config, trace_comm_count);
	FIELD(collector_config, chunk_size);
	FIELD(collector_config, max_chunks_per_call);
	FIELD(collector_config, wakeup_bytes);
	FIELD(collector_config, trace_comms);
	printf("SOURCE_SYSCALL %d\n", SOURCE_SYSCALL);
	printf("SOURCE_OPENSSL %d\n", SOURCE_OPENSSL);
	printf("SOURCE_GNUTLS %d\n", SOURCE_GNUTLS);
	printf("SOURCE_GO_TLS %d\n", SOURCE_GO_TLS);
	printf("MAX_DATA_SIZE %d\n", MAX_DATA_SIZE);
	printf("DROP_COUNTER_COUNT %d\n", DROP_COUNTER_COUNT);
	return 0;
}
