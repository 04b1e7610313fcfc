using System.Runtime.InteropServices;
using Collector.Connections;
using Collector.Events;
using Collector.Metrics;
using Collector.Tests.Support;

namespace Collector.Tests.Kernel;

/// <summary>RingBufferReader.CaptureFrom: the data events of the start-up window (probes being
/// attached one by one) are left out and counted apart, their connections told that they join
/// mid-stream; events without bytes (process, open, close) are not left out.</summary>
public sealed unsafe partial class CaptureStartTests
{
    [LibraryImport("libbpf.so.1", EntryPoint = "bpf_map_create", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int BpfMapCreate(int type, string? name, uint keySize, uint valueSize, uint maxEntries, IntPtr opts);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);

    private sealed class Recorder : IKernelEventHandler
    {
        public readonly List<string> Seen = [];
        public void OnOpen(in OpenEvent e) => Seen.Add($"open {e.Header.TimestampNs}");
        public void OnData(in DataEventHeader h, ReadOnlySpan<byte> payload) => Seen.Add($"data {h.Header.TimestampNs}");
        public void OnDataBeforeCapture(in DataEventHeader h) => Seen.Add($"left out {h.Header.TimestampNs}");
        public void OnClose(in CloseEvent e) => Seen.Add($"close {e.Header.TimestampNs}");
        public void OnExec(uint tgid) => Seen.Add($"exec {tgid}");
        public void OnExit(uint tgid, ulong timestampNs) => Seen.Add($"exit {timestampNs}");
        public void OnBind(in BindEvent e) => Seen.Add($"bind {e.Header.TimestampNs}");
    }

    private static void Send<T>(RingBufferReader reader, T e) where T : unmanaged =>
        reader.Dispatch((byte*)&e, sizeof(T));

    private static EventHeader Header(EventType type, ulong ns) => new() { TimestampNs = ns, Type = type, Tgid = 42, Fd = 3 };

    [Fact]
    public void Data_before_the_capture_start_is_left_out_and_counted_events_without_bytes_are_not()
    {
        var fd = BpfMapCreate(27 /* BPF_MAP_TYPE_RINGBUF */, "test_events", 0, 0, 4096, IntPtr.Zero);
        Assert.True(fd >= 0, $"bpf_map_create failed: {Marshal.GetLastPInvokeError()}");
        try
        {
            var metrics = new CollectorMetrics();
            var handler = new Recorder();
            using var reader = new RingBufferReader(fd, handler, metrics, new ListLogger());

            // a reader no one told when capture starts passes everything (the tests' readers)
            Send(reader, new OpenEvent { Header = Header(EventType.Open, 5) });

            reader.CaptureFrom(ulong.MaxValue); // probes being attached
            Send(reader, new OpenEvent { Header = Header(EventType.Open, 10) });
            Send(reader, new DataEventHeader { Header = Header(EventType.Data, 11) });
            Send(reader, new EventHeader { TimestampNs = 12, Type = EventType.Exec, Tgid = 7 });
            reader.CaptureFrom(100); // the last probe went on at 100
            Send(reader, new DataEventHeader { Header = Header(EventType.Data, 99) }); // still in the ring from before
            Send(reader, new CloseEvent { Header = Header(EventType.Close, 99) });
            Send(reader, new EventHeader { TimestampNs = 98, Type = EventType.Exit, Tgid = 7 });
            Send(reader, new DataEventHeader { Header = Header(EventType.Data, 100) });
            Send(reader, new CloseEvent { Header = Header(EventType.Close, 101) });
            reader.Poll(0); // publishes the counts

            Assert.Equal(["open 5", "open 10", "left out 11", "exec 7", "left out 99", "close 99", "exit 98", "data 100", "close 101"], handler.Seen);
            Assert.Equal(2, metrics.EventsBeforeCapture.Value);
            Assert.Contains("collector_events_before_capture_total 2", metrics.Render());
        }
        finally
        {
            Close(fd);
        }
    }
}
