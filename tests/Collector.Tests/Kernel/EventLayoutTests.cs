using System.Runtime.InteropServices;
using Collector.Events;
using Collector.Tests.Support;

namespace Collector.Tests.Kernel;

/// <summary>The C# event structs must match bpf/collector.h byte for byte: the C compiler prints
/// its layout (native/layout_dump.c) and we compare.</summary>
public sealed class EventLayoutTests
{
    private static readonly Dictionary<string, long> C = Shell.Check(Path.Combine(Repo.Build, "layout_dump"), "")
        .Split('\n', StringSplitOptions.RemoveEmptyEntries)
        .Select(l => l.Split(' '))
        .ToDictionary(p => p[0], p => long.Parse(p[1]));

    public static IEnumerable<object[]> Fields() =>
    [
        ["event_header.timestamp_ns", typeof(EventHeader), nameof(EventHeader.TimestampNs)],
        ["event_header.type", typeof(EventHeader), nameof(EventHeader.Type)],
        ["event_header.tgid", typeof(EventHeader), nameof(EventHeader.Tgid)],
        ["event_header.fd", typeof(EventHeader), nameof(EventHeader.Fd)],
        ["event_header.generation", typeof(EventHeader), nameof(EventHeader.Generation)],
        ["open_event.family", typeof(OpenEvent), nameof(OpenEvent.Family)],
        ["open_event.local_port", typeof(OpenEvent), nameof(OpenEvent.LocalPort)],
        ["open_event.remote_port", typeof(OpenEvent), nameof(OpenEvent.RemotePort)],
        ["open_event.origin", typeof(OpenEvent), nameof(OpenEvent.Origin)],
        ["open_event.local_addr", typeof(OpenEvent), nameof(OpenEvent.LocalAddr)],
        ["open_event.remote_addr", typeof(OpenEvent), nameof(OpenEvent.RemoteAddr)],
        ["open_event.comm", typeof(OpenEvent), nameof(OpenEvent.Comm)],
        ["data_event.position", typeof(DataEventHeader), nameof(DataEventHeader.Position)],
        ["data_event.call_bytes", typeof(DataEventHeader), nameof(DataEventHeader.CallBytes)],
        ["data_event.data_len", typeof(DataEventHeader), nameof(DataEventHeader.DataLength)],
        ["data_event.direction", typeof(DataEventHeader), nameof(DataEventHeader.Direction)],
        ["data_event.source", typeof(DataEventHeader), nameof(DataEventHeader.Source)],
        ["close_event.egress_bytes", typeof(CloseEvent), nameof(CloseEvent.EgressBytes)],
        ["close_event.ingress_bytes", typeof(CloseEvent), nameof(CloseEvent.IngressBytes)],
        ["close_event.flags", typeof(CloseEvent), nameof(CloseEvent.Flags)],
        ["data_event.tls_ctx", typeof(DataEventHeader), nameof(DataEventHeader.TlsCtx)],
        ["bind_event.tls_ctx", typeof(BindEvent), nameof(BindEvent.TlsCtx)],
        ["collector_config.collector_tgid", typeof(CollectorConfig), nameof(CollectorConfig.CollectorTgid)],
        ["collector_config.host_mnt_ns", typeof(CollectorConfig), nameof(CollectorConfig.HostMntNs)],
        ["collector_config.host_pid_ns", typeof(CollectorConfig), nameof(CollectorConfig.HostPidNs)],
        ["collector_config.ringbuf_dynptr", typeof(CollectorConfig), nameof(CollectorConfig.RingbufDynptr)],
        ["collector_config.direct_copy_off", typeof(CollectorConfig), nameof(CollectorConfig.DirectCopyOff)],
        ["collector_config.capture_plain", typeof(CollectorConfig), nameof(CollectorConfig.CapturePlain)],
        ["collector_config.capture_tls", typeof(CollectorConfig), nameof(CollectorConfig.CaptureTls)],
        ["collector_config.probe_all_pid", typeof(CollectorConfig), nameof(CollectorConfig.ProbeAllPid)],
        ["collector_config.filter_pids", typeof(CollectorConfig), nameof(CollectorConfig.FilterPids)],
        ["collector_config.trace_comm_count", typeof(CollectorConfig), nameof(CollectorConfig.TraceCommCount)],
        ["collector_config.chunk_size", typeof(CollectorConfig), nameof(CollectorConfig.ChunkSize)],
        ["collector_config.max_chunks_per_call", typeof(CollectorConfig), nameof(CollectorConfig.MaxChunksPerCall)],
        ["collector_config.wakeup_bytes", typeof(CollectorConfig), nameof(CollectorConfig.WakeupBytes)],
        ["collector_config.trace_comms", typeof(CollectorConfig), nameof(CollectorConfig.TraceComms)],
    ];

    [Theory]
    [MemberData(nameof(Fields))]
    public void Field_offsets_match_the_C_header(string cField, Type type, string field)
    {
        var expected = C[cField];
        var offset = Marshal.OffsetOf(type, field).ToInt64();
        Assert.Equal(expected, offset);
    }

    [Fact]
    public void Event_sources_match_the_C_header_and_the_source_table()
    {
        (string C, EventSource Id)[] sources =
        [
            ("SOURCE_SYSCALL", EventSource.Syscall), ("SOURCE_OPENSSL", EventSource.OpenSsl),
            ("SOURCE_GNUTLS", EventSource.GnuTls), ("SOURCE_GO_TLS", EventSource.GoTls),
        ];
        Assert.Equal(C.Keys.Count(k => k.StartsWith("SOURCE_")), sources.Length);
        Assert.Equal(Enum.GetValues<EventSource>().Order(), sources.Select(s => s.Id).Order());
        foreach (var (name, id) in sources) Assert.Equal(C[name], (long)id);
        // the table is indexed by id and names every source once
        Assert.Equal(sources.Length, CaptureSources.All.Count);
        for (var i = 0; i < CaptureSources.All.Count; i++) Assert.Equal(i, (int)CaptureSources.All[i].Id);
        Assert.Equal(CaptureSources.All.Count, CaptureSources.All.Select(s => s.MetricLabel).Distinct().Count());
        Assert.Equal(CaptureSources.All.Count, CaptureSources.All.Select(s => s.DumpName).Distinct().Count());
    }

    [Fact]
    public unsafe void Struct_sizes_match_the_C_header()
    {
        Assert.Equal(C["event_header"], sizeof(EventHeader));
        Assert.Equal(C["open_event"], sizeof(OpenEvent));
        Assert.Equal(C["data_event_header"], sizeof(DataEventHeader));
        Assert.Equal(C["data_event.data"], sizeof(DataEventHeader));
        Assert.Equal(C["close_event"], sizeof(CloseEvent));
        Assert.Equal(C["bind_event"], sizeof(BindEvent));
        Assert.Equal(C["collector_config"], sizeof(CollectorConfig));
        Assert.Equal(C["MAX_DATA_SIZE"], EventLayout.MaxDataSize);
        Assert.Equal(C["DROP_COUNTER_COUNT"], (long)KernelDropReason.Count);
    }
}
