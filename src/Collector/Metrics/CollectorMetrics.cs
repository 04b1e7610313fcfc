using Collector.Events;

namespace Collector.Metrics;

/// <summary>Every count the collector keeps about itself. Each place data can be dropped has a
/// counter here, and all of them are on /metrics.</summary>
public sealed class CollectorMetrics
{
    public LabeledCounter EventsRead { get; } = new("source", 8);
    public LabeledCounter BytesRead { get; } = new("source", 8);
    public LabeledCounter KernelDrops { get; } = new("reason", 16);
    public LabeledCounter KernelDroppedBytes { get; } = new("reason", 16);
    public LabeledCounter ExchangesEmitted { get; } = new("direction", 4);
    public LabeledCounter ExchangesFiltered { get; } = new("reason", 16);
    public LabeledCounter HttpDrops { get; } = new("reason", 128); // reassembly names ~70 reasons
    public LabeledCounter KafkaMessages { get; } = new("result", 8);
    public LabeledCounter KafkaFailures { get; } = new("error", 32);
    public LabeledCounter KafkaControlMessages { get; } = new("result", 8);
    public LabeledCounter ProbesAttached { get; } = new("library", 256);
    /// <summary>Go programs examined for crypto/tls, by result: probed, or why not.</summary>
    public LabeledCounter GoBinaries { get; } = new("result", 8);
    /// <summary>Go TLS calls' sockets checked at the syscalls they made, by result.</summary>
    public LabeledCounter GoFdChecks { get; } = new("result", 4);
    public LabeledCounter HostRequests { get; } = new("host", 200);
    public LabeledCounter ConnectionsEnded { get; } = new("reason", 8);
    public Counter GapBytes { get; } = new();
    public Counter TlsConnectionsUnseen { get; } = new();
    public Counter TlsUnseenBytes { get; } = new();
    public Counter TlsUnboundDroppedBytes { get; } = new();
    public Counter OpaqueBytes { get; } = new();
    public Counter ShedBytes { get; } = new();
    public Counter ResyncSkippedBytes { get; } = new();
    public Counter EventsBeforeCapture { get; } = new();
    public LabeledCounter BodiesCut { get; } = new("reason", 8);
    public LabeledCounter Http2Connections { get; } = new("start", 4);
    public LabeledCounter Http2StreamsUnnamed { get; } = new("reason", 16);
    public Counter Http2UnknownFields { get; } = new();
    public Counter GrpcMessages { get; } = new();
    public Counter ProcessScans { get; } = new();
    public Counter ProcessExecScans { get; } = new();
    public Counter ProbeAttachFailures { get; } = new();
    public Counter BodiesDecoded { get; } = new();
    public Counter BodyDecodeFailures { get; } = new();
    public Counter ConfigReloads { get; } = new();
    public Counter ConfigReloadFailures { get; } = new();
    public Counter MongoReads { get; } = new();
    public LabeledCounter MongoFailures { get; } = new("reason", 16);
    public SensitiveMetrics Sensitive { get; set; } = new(500);
    public Histogram ExchangeLatency { get; } = new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30]);

    public long ConnectionsTracked;
    public long BufferedBytes;
    public long BufferBudgetBytes;
    public long MemoryBudgetBytes;
    public int KafkaReachable = -1;
    public int TracepointsAttached;
    public int DiscoveryRuleCount;
    /// <summary>1 the last read of MongoDB's settings succeeded, 0 it failed (or none yet), -1 no MongoDB.</summary>
    public int MongoSettingsOk = -1;
    public int HeaderValueFilterEntries;

    /// <summary>The Kafka outcomes and filter reasons exist from the start at 0, so that a rate()
    /// over them has a series before the first one happens.</summary>
    public static readonly string[] KafkaResults = ["queued", "delivered", "failed", "shed"];
    public static readonly string[] FilterReasons = ["egress_disabled", "ip_host", "cloud_metadata", "discovery_rules", "header_value_filter", "sensitive_data"];

    public CollectorMetrics()
    {
        foreach (var r in KafkaResults) _ = KafkaMessages[r];
        foreach (var r in FilterReasons) _ = ExchangesFiltered[r];
        foreach (var d in new[] { "inbound", "outbound" }) _ = ExchangesEmitted[d];
        foreach (var st in new[] { "preface", "upgrade", "joined" }) _ = Http2Connections[st];
        foreach (var r in SensitiveMetrics.Results) _ = Sensitive.Exchanges[r];
        foreach (var s in CaptureSources.All)
        {
            _ = EventsRead[s.MetricLabel];
            _ = BytesRead[s.MetricLabel];
        }
    }
    public long KafkaWaiting;

    public void CountHttpDrop(string reason) => HttpDrops[reason].Increment();

    public static string KernelReasonLabel(KernelDropReason r) => r switch
    {
        KernelDropReason.RingBufferFull => "ringbuf_full",
        KernelDropReason.RingBufferFullBytes => "ringbuf_full",
        KernelDropReason.BeyondCaptureBytes => "beyond_capture_size",
        KernelDropReason.IovSkipped => "iov_skipped",
        KernelDropReason.ConnectionMapFull => "conn_map_full",
        KernelDropReason.NotHttpBytes => "not_http",
        KernelDropReason.ReadFailedBytes => "user_memory_unreadable",
        KernelDropReason.SendfileBytes => "sendfile",
        KernelDropReason.ActiveCallsFull => "active_calls_full",
        KernelDropReason.TlsCallsOverlapped => "tls_calls_overlapped",
        KernelDropReason.GoConnNotTcpBytes => "go_conn_not_tcp",
        KernelDropReason.GoBeforeAttachBytes => "go_before_attach",
        _ => "other",
    };

    /// <summary>The stage of an HTTP-level drop reason (collector_http_dropped_total's label).</summary>
    public static string HttpDropStage(string reason) => reason switch
    {
        "event_handler_error" => "events",
        "output_error" or "message_too_large" => "output",
        _ => "reassembly",
    };

    /// <summary>Every place where whole events, messages or exchanges are lost, one series per
    /// (stage, reason): kernel, events, reassembly, output, kafka.</summary>
    public IEnumerable<(string Stage, string Reason, long Value)> Drops()
    {
        foreach (var (reason, c) in KernelDrops.Series) yield return ("kernel", reason, c.Value);
        foreach (var (reason, c) in HttpDrops.Series) yield return (HttpDropStage(reason), reason, c.Value);
        yield return ("kafka", "failed", KafkaMessages["failed"].Value);
        yield return ("kafka", "shed", KafkaMessages["shed"].Value);
    }

    /// <summary>Every place where payload bytes are lost, one series per (stage, reason).</summary>
    public IEnumerable<(string Stage, string Reason, long Value)> DroppedBytes()
    {
        foreach (var (reason, c) in KernelDroppedBytes.Series) yield return ("kernel", reason, c.Value);
        yield return ("reassembly", "gap", GapBytes.Value);
        yield return ("reassembly", "buffer_budget", ShedBytes.Value);
        yield return ("reassembly", "upgraded_connection", OpaqueBytes.Value);
    }

    /// <summary>Runs before each rendering: brings counters kept elsewhere (the kernel's maps) up to date.</summary>
    public Action? BeforeRender { get; set; }

    public string Render()
    {
        BeforeRender?.Invoke();
        var proc = System.Diagnostics.Process.GetCurrentProcess();
        return Sensitive.Render(new PrometheusWriter()
            .Labeled("collector_events_read_total", "Kernel events read from the ring buffer, by source.", "counter", EventsRead)
            .Labeled("collector_bytes_read_total", "Payload bytes read from the ring buffer, by source.", "counter", BytesRead)
            .Labeled("collector_kernel_drops_total", "Events or calls dropped in the kernel, by reason.", "counter", KernelDrops)
            .Labeled("collector_kernel_dropped_bytes_total", "Payload bytes not delivered by the kernel, by reason.", "counter", KernelDroppedBytes)
            .Labeled("collector_exchanges_emitted_total", "Request/response exchanges handed to the output, by direction.", "counter", ExchangesEmitted)
            .Labeled("collector_exchanges_filtered_total", "Exchanges dropped by a filter, by reason.", "counter", ExchangesFiltered)
            .Labeled("collector_http_dropped_total", "HTTP messages lost or skipped in reassembly, by reason.", "counter", HttpDrops)
            .Labeled("collector_kafka_messages_total", "Kafka messages by outcome (queued, delivered, failed, shed).", "counter", KafkaMessages)
            .Labeled("collector_kafka_failures_total", "Kafka delivery failures by error.", "counter", KafkaFailures)
            .Labeled("collector_kafka_control_messages_total", "Connection test and heartbeat messages by kind and outcome.", "counter", KafkaControlMessages)
            .Labeled("collector_probes_attached", "Uprobes attached, by library file.", "gauge", ProbesAttached)
            .Labeled("collector_go_binaries_total", "Go programs with crypto/tls examined, by result: probed, or why not (too_old: before Go 1.17; unsupported; invalid; fd_offsets).", "counter", GoBinaries)
            .Labeled("collector_go_fd_checks_total", "Sockets of Go TLS calls checked against a syscall made inside the call: match, mismatch (the syscall's taken), learned (the tls.Conn named none: a wrapped net.Conn).", "counter", GoFdChecks)
            .Labeled("collector_host_requests_total", "Requests by Host header (the processor's traffic metrics), at most 200 hosts.", "counter", HostRequests)
            .Labeled("collector_connections_ended_total", "Connections forgotten, by reason.", "counter", ConnectionsEnded)
            .Family("collector_drops_total", "Events, messages or exchanges lost, by stage (kernel, events, reassembly, output, kafka) and reason.", "counter",
                Drops().Select(d => ((IReadOnlyList<(string, string)>)[("stage", d.Stage), ("reason", d.Reason)], (double)d.Value)))
            .Family("collector_dropped_bytes_total", "Payload bytes lost, by stage and reason.", "counter",
                DroppedBytes().Select(d => ((IReadOnlyList<(string, string)>)[("stage", d.Stage), ("reason", d.Reason)], (double)d.Value)))
            .Counter("collector_gap_bytes_total", "Bytes missing from captured streams (kernel positions).", GapBytes.Value)
            .Counter("collector_tls_connections_unseen_total", "TLS connections closed without any plaintext seen at a probed library.", TlsConnectionsUnseen.Value)
            .Counter("collector_tls_unseen_bytes_total", "Encrypted bytes of those connections.", TlsUnseenBytes.Value)
            .Counter("collector_tls_unbound_dropped_bytes_total", "TLS plaintext dropped because its socket was never learned.", TlsUnboundDroppedBytes.Value)
            .Counter("collector_opaque_bytes_total", "Bytes of upgraded (101/CONNECT) connections, not parsed.", OpaqueBytes.Value)
            .Counter("collector_shed_bytes_total", "Buffered bytes shed to stay within TRAFFIC_BUFFER_THRESHOLD.", ShedBytes.Value)
            .Counter("collector_resync_skipped_bytes_total", "Bytes skipped while looking for the next HTTP message after a loss.", ResyncSkippedBytes.Value)
            .Counter("collector_events_before_capture_total", "Kernel data events of the start-up window, while the probes were being attached one by one, left out (not drops: capture starts when every probe is on).", EventsBeforeCapture.Value)
            .Labeled("collector_http2_connections_total", "HTTP/2 connections by how they began: preface (prior knowledge or TLS ALPN h2), upgrade (h2c), joined (mid-stream: started before the collector or after a hole).", "counter", Http2Connections)
            .Labeled("collector_http2_streams_unnamed_total", "HTTP/2 streams that could not be named (no :method/:path or :status decoded), by reason; not emitted.", "counter", Http2StreamsUnnamed)
            .Counter("collector_http2_unknown_fields_total", "HPACK header fields that referenced dynamic-table entries never seen (joined mid-stream): left out of their message.", Http2UnknownFields.Value)
            .Counter("collector_grpc_messages_total", "gRPC messages cut out of HTTP/2 streams.", GrpcMessages.Value)
            .Labeled("collector_bodies_cut_total", "Bodies emitted with a part missing, marked in their headers (cap, gap, incomplete).", "counter", BodiesCut)
            .Family("collector_process_scans_total", "Scans of processes for TLS libraries: every process (start, UPROBE_POLL_INTERVAL) or one that just called exec.", "counter",
                [([("trigger", "full")], ProcessScans.Value), ([("trigger", "exec")], ProcessExecScans.Value)])
            .Counter("collector_probe_attach_failures_total", "Uprobe attachments that failed.", ProbeAttachFailures.Value)
            .Counter("collector_bodies_decoded_total", "Bodies decompressed (gzip, deflate, br).", BodiesDecoded.Value)
            .Counter("collector_body_decode_failures_total", "Bodies whose content-encoding could not be decoded.", BodyDecodeFailures.Value)
            .Counter("collector_config_reloads_total", "Discovery rule files loaded after start.", ConfigReloads.Value)
            .Counter("collector_config_reload_failures_total", "Discovery rule files refused.", ConfigReloadFailures.Value)
            .Counter("collector_mongo_settings_reads_total", "Reads of accounts_settings from MongoDB (AKTO_MONGO_CONN) that succeeded.", MongoReads.Value)
            .Labeled("collector_mongo_settings_failures_total", "Reads of accounts_settings from MongoDB that failed, by reason; the last good value stays in effect.", "counter", MongoFailures)
            .Histogram("collector_exchange_latency_seconds", "From the response's last byte in the kernel to the output.", ExchangeLatency)
            .Gauge("collector_connections_tracked", "Connections tracked in user space.", Interlocked.Read(ref ConnectionsTracked))
            .Gauge("collector_buffered_bytes", "Bytes buffered in reassembly (not yet paired).", Interlocked.Read(ref BufferedBytes))
            .Gauge("collector_buffer_budget_bytes", "TRAFFIC_BUFFER_THRESHOLD in bytes.", Interlocked.Read(ref BufferBudgetBytes))
            .Gauge("collector_process_memory_bytes", "Resident memory of the collector.", proc.WorkingSet64)
            .Gauge("collector_memory_budget_bytes", "AKTO_MEM_THRESH_RESTART in bytes: past it the collector exits to be restarted.", Interlocked.Read(ref MemoryBudgetBytes))
            .Gauge("collector_managed_heap_bytes", "Bytes in the .NET heap.", GC.GetTotalMemory(false))
            // the runtime compiling (tiering up) methods is CPU the collector spends for minutes after start:
            // a benchmark or an operator sees here when it has settled
            .Counter("collector_jit_compiled_methods_total", "Methods compiled by the .NET JIT since start (every tier).", System.Runtime.JitInfo.GetCompiledMethodCount(false))
            .Counter("collector_jit_seconds_total", "Time the .NET JIT spent compiling since start, all threads.", System.Runtime.JitInfo.GetCompilationTime(false).TotalSeconds)
            .Gauge("collector_tracepoints_attached", "Syscall and sched tracepoints attached.", Volatile.Read(ref TracepointsAttached))
            .Gauge("collector_discovery_rules", "Discovery rules in effect (AKTO_MODULE_DISCOVERY_CONFIG or its file).", Volatile.Read(ref DiscoveryRuleCount))
            .Gauge("collector_mongo_settings_ok", "1 when the last read of accounts_settings succeeded, 0 when it failed (or none answered yet), -1 without MongoDB.", Volatile.Read(ref MongoSettingsOk))
            .Gauge("collector_header_value_filter_entries", "Entries of the header-value filter in effect (AKTO_HEADER_VALUE_FILTER or MongoDB's filterHeaderValueMap); 0 keeps every request.", Volatile.Read(ref HeaderValueFilterEntries))
            .Gauge("collector_kafka_reachable", "1 when the broker answered, 0 when not, -1 without Kafka.", KafkaReachable)
            .Gauge("collector_kafka_waiting_messages", "Messages queued for Kafka and not yet acknowledged (bounded by KAFKA_QUEUE_MESSAGES/KAFKA_QUEUE_MB).", Interlocked.Read(ref KafkaWaiting)))
            .ToString();
    }
}
