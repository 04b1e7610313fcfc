using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Collector.Connections;
using Collector.Kernel;
using Collector.Metrics;
using Microsoft.Extensions.Logging;

namespace Collector.Events;

/// <summary>Reads the kernel's ring buffer on a dedicated thread and hands each event, decoded in
/// place, to the connection table. A sample lives only during the callback: data events are copied
/// once, straight into their connection's pipe.</summary>
public sealed unsafe class RingBufferReader : IDisposable
{
    private readonly IKernelEventHandler _handler;
    private readonly CollectorMetrics _metrics;
    private readonly ILogger _log;
    private readonly RingBufferHandle _ring;
    private GCHandle _self;
    private readonly Counter[] _eventCounters, _byteCounters;
    private readonly Counter _controlEvents;

    /// <summary>What this poll read, counted in plain fields and added to the shared counters once
    /// per poll: an interlocked add per event and per byte count cost more than the dispatch. Data
    /// events by source id (<see cref="CaptureSources.All"/>), the last slot for an id this build
    /// does not know.</summary>
    private readonly long[] _eventsRead = new long[CaptureSources.All.Count + 1];
    private readonly long[] _bytesRead = new long[CaptureSources.All.Count + 1];
    private long _controlEventsRead;
    private ulong _captureFromNs;
    private long _beforeCapture;

    public RingBufferReader(int mapFd, IKernelEventHandler handler, CollectorMetrics metrics, ILogger log)
    {
        _handler = handler;
        _metrics = metrics;
        _log = log;
        _eventCounters = CaptureSources.All.Select(s => metrics.EventsRead[s.MetricLabel]).ToArray();
        _byteCounters = CaptureSources.All.Select(s => metrics.BytesRead[s.MetricLabel]).ToArray();
        _controlEvents = metrics.EventsRead["control"];
        _self = GCHandle.Alloc(this);
        _ring = RingBufferHandle.FromPointer(
            Interop.Libbpf.RingBufferNew(mapFd, &OnSample, GCHandle.ToIntPtr(_self), IntPtr.Zero));
    }

    public long HandlerErrors;

    /// <summary>Waits up to timeoutMs for the kernel's wakeup, then consumes whatever is there: the
    /// kernel wakes us only in batches, so a timeout with data waiting is normal.</summary>
    public int Poll(int timeoutMs)
    {
        var n = Interop.Libbpf.RingBufferPoll(_ring, timeoutMs);
        if (n < 0 && n != -4 /* EINTR */) throw new BpfException("ring_buffer__poll", -n);
        var m = Interop.Libbpf.RingBufferConsume(_ring);
        PublishCounts();
        if (m < 0 && m != -4) throw new BpfException("ring_buffer__consume", -m);
        return Math.Max(n, 0) + Math.Max(m, 0);
    }

    private void PublishCounts()
    {
        static void Move(ref long read, Counter to)
        {
            if (read == 0) return;
            to.Add(read);
            read = 0;
        }
        for (var i = 0; i < _eventCounters.Length; i++)
        {
            Move(ref _eventsRead[i], _eventCounters[i]);
            Move(ref _bytesRead[i], _byteCounters[i]);
        }
        var unknown = _eventCounters.Length;
        if (_eventsRead[unknown] != 0)
        {
            // its series is made only when such an event comes
            Move(ref _eventsRead[unknown], _metrics.EventsRead[CaptureSources.Unknown]);
            Move(ref _bytesRead[unknown], _metrics.BytesRead[CaptureSources.Unknown]);
        }
        Move(ref _controlEventsRead, _controlEvents);
        Move(ref _beforeCapture, _metrics.EventsBeforeCapture);
    }

    /// <summary>Leaves out the data events stamped (CLOCK_MONOTONIC) before ns; the events that
    /// carry no bytes (process exec and exit, connection open, bind and close) still count, so
    /// that a connection of the window keeps its addresses and is ended by its close. Why: the
    /// syscall tracepoints are attached one at a time, which under load took seconds here, and
    /// while only some were on, a connection's
    /// requests were seen without their responses (a write probe on, its read not yet): 130k
    /// exchanges per start counted as pairing losses in bench-capture's startup row. Capture
    /// starts when the last probe is on, for every syscall at once, as if the collector had
    /// started at that instant; a connection whose bytes were left out is then joined mid-stream
    /// like one opened before the collector started (<see cref="IKernelEventHandler.OnDataBeforeCapture"/>).
    /// Set from the start-up thread, read by the reader thread.</summary>
    public void CaptureFrom(ulong ns) => Volatile.Write(ref _captureFromNs, ns);

    [UnmanagedCallersOnly]
    private static int OnSample(IntPtr ctx, IntPtr data, nuint size)
    {
        var reader = (RingBufferReader)GCHandle.FromIntPtr(ctx).Target!;
        try
        {
            reader.Dispatch((byte*)data, (int)size);
        }
        catch (Exception e)
        {
            // An exception must not unwind into libbpf. Count it, log it, and go on with the next event.
            if (Interlocked.Increment(ref reader.HandlerErrors) <= 10)
                reader._log.LogError(e, "error handling a kernel event");
            reader._metrics.CountHttpDrop("event_handler_error");
        }
        return 0;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void Dispatch(byte* data, int size)
    {
        if (size < sizeof(EventHeader)) return;
        var header = (EventHeader*)data;
        if (TraceEvents) LogEvent(data, size);
        if (header->TimestampNs < _captureFromNs && header->Type == EventType.Data)
        {
            _beforeCapture++;
            // its connection is joined mid-stream at the capture start, like one opened before
            // the collector: its first bytes seen may be mid-message
            if (size >= sizeof(DataEventHeader)) _handler.OnDataBeforeCapture(*(DataEventHeader*)data);
            return;
        }
        switch (header->Type)
        {
            case EventType.Data when size >= sizeof(DataEventHeader):
            {
                var h = (DataEventHeader*)data;
                var len = (int)Math.Min(h->DataLength, (uint)(size - sizeof(DataEventHeader)));
                var source = Math.Min((int)h->Source, CaptureSources.All.Count);
                _eventsRead[source]++;
                _bytesRead[source] += len;
                _handler.OnData(*h, new ReadOnlySpan<byte>(data + sizeof(DataEventHeader), len));
                break;
            }
            case EventType.Open when size >= sizeof(OpenEvent):
                _controlEventsRead++;
                _handler.OnOpen(*(OpenEvent*)data);
                break;
            case EventType.Close when size >= sizeof(CloseEvent):
                _controlEventsRead++;
                _handler.OnClose(*(CloseEvent*)data);
                break;
            case EventType.Bind when size >= sizeof(BindEvent):
                _controlEventsRead++;
                _handler.OnBind(*(BindEvent*)data);
                break;
            case EventType.Exec:
                _controlEventsRead++;
                _handler.OnExec(header->Tgid);
                break;
            case EventType.Exit:
                _controlEventsRead++;
                _handler.OnExit(header->Tgid, header->TimestampNs);
                break;
        }
    }

    /// <summary>COLLECTOR_TRACE_EVENTS=true: one log line per kernel event, for debugging capture.</summary>
    public bool TraceEvents { get; init; }

    private void LogEvent(byte* data, int size)
    {
        var h = (EventHeader*)data;
        if (h->Type == EventType.Data && size >= sizeof(DataEventHeader))
        {
            var d = (DataEventHeader*)data;
            var len = (int)Math.Min(d->DataLength, 48);
            var text = System.Text.Encoding.ASCII.GetString(data + sizeof(DataEventHeader), len).Replace("\r", "\\r").Replace("\n", "\\n");
            _log.LogInformation("event data tgid={Tgid} fd={Fd} gen={Gen} {Dir} {Source} pos={Pos} len={Len} call={Call} ctx={Ctx:x} {Text}",
                h->Tgid, (int)h->Fd, h->Generation, d->Direction, d->Source, d->Position, d->DataLength, d->CallBytes, d->TlsCtx, text);
        }
        else if (h->Type == EventType.Bind && size >= sizeof(BindEvent))
            _log.LogInformation("event bind tgid={Tgid} fd={Fd} gen={Gen} ctx={Ctx:x}", h->Tgid, h->Fd, h->Generation, ((BindEvent*)data)->TlsCtx);
        else if (h->Type == EventType.Close && size >= sizeof(CloseEvent))
            _log.LogInformation("event close tgid={Tgid} fd={Fd} gen={Gen} flags={Flags}", h->Tgid, h->Fd, h->Generation, ((CloseEvent*)data)->Flags);
        else
            _log.LogInformation("event {Type} tgid={Tgid} fd={Fd} gen={Gen}", h->Type, h->Tgid, h->Fd, h->Generation);
    }

    public void Dispose()
    {
        _ring.Dispose();
        if (_self.IsAllocated) _self.Free();
    }
}
