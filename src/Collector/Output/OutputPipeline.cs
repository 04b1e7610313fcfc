using System.Buffers;
using Collector.Connections;
using Collector.Filtering;
using Collector.Metrics;
using Collector.Sensitive;
using Microsoft.Extensions.Logging;

namespace Collector.Output;

/// <summary>Where encoded Akto messages go: stdout (no broker configured) or Kafka.</summary>
public interface IMessageSink : IAsyncDisposable
{
    /// <summary>Takes one encoded message and its collection_details header (empty: none); the
    /// sink copies what it keeps.</summary>
    void Publish(ReadOnlySpan<byte> message, ReadOnlySpan<byte> collectionDetails);
    /// <summary>Delivers what is queued, waiting at most grace; returns how many were left undelivered.</summary>
    Task<long> FlushAsync(TimeSpan grace);
    /// <summary>Whether the sink can deliver now (the broker answered); null when not applicable.</summary>
    bool? Reachable { get; }
    /// <summary>A poll of the ring buffer ended: a good moment to push out what is buffered.</summary>
    void Idle();
}

/// <summary>JSON lines on stdout: the local sink and `make run`'s output.</summary>
public sealed class StdoutSink : IMessageSink
{
    private readonly Stream _out = Console.OpenStandardOutput();
    private readonly BufferedStream _buffer;

    public StdoutSink() => _buffer = new BufferedStream(_out, 1 << 16);

    public bool? Reachable => null;

    public void Publish(ReadOnlySpan<byte> message, ReadOnlySpan<byte> collectionDetails)
    {
        _buffer.Write(message);
        _buffer.WriteByte((byte)'\n');
    }

    public void Idle() => _buffer.Flush();

    public Task<long> FlushAsync(TimeSpan grace)
    {
        _buffer.Flush();
        return Task.FromResult(0L);
    }

    public ValueTask DisposeAsync()
    {
        _buffer.Flush();
        return ValueTask.CompletedTask;
    }
}

/// <summary>The stage after reassembly: filter → encode → sink, on the event thread, as each
/// exchange completes.
///
/// Why not a queue to an output thread: the exchange's bytes were just written by reassembly and
/// are still in this core's cache; handing them to another thread made that thread fetch every
/// byte again from the other core, and paid a queue and a wakeup per batch. Encoding in place took
/// the collector's CPU per request from 8.5 µs to 5.9 µs under wrk (perf, nginx + wrk on two
/// cores). Nothing here blocks: the Kafka sink queues and sheds on its own (KafkaSink), and a full
/// stdout blocks only a local run. A slow stage shows as ring-buffer drops in the kernel, counted.</summary>
public sealed class OutputPipeline
{
    private readonly ExchangeFilter _filter;
    private readonly IMessageSink _sink;
    private readonly CollectorMetrics _metrics;
    private readonly AktoIdentity _identity;
    private readonly int _bodyCap;
    private readonly int _maxMessageBytes;
    private readonly ILogger _log;
    private readonly long _realtimeOffsetNs;
    private readonly MessageBuffer _buffer = new(16384);
    private readonly MessageBuffer _details = new(512);
    private readonly MessageParts _parts = new();
    private readonly SensitivePolicySource? _policies;
    private readonly SensitiveClassifier? _classifier;
    private string? _lastHost;
    private Counter? _lastHostRequests;

    public OutputPipeline(ExchangeFilter filter, IMessageSink sink, CollectorMetrics metrics, AktoIdentity identity,
        int bodyCap, int maxMessageBytes, ILogger log, SensitivePolicySource? policies = null, byte[]? maskKey = null)
    {
        _policies = policies;
        _classifier = policies is null ? null : new SensitiveClassifier(metrics.Sensitive, maskKey);
        _filter = filter;
        _sink = sink;
        _metrics = metrics;
        _identity = identity;
        _bodyCap = bodyCap;
        _maxMessageBytes = maxMessageBytes;
        _log = log;
        // kernel timestamps are CLOCK_MONOTONIC; the message wants Unix time
        _realtimeOffsetNs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1_000_000 - (long)ConnectionTable.MonotonicNowNs();
    }

    /// <summary>Called on the event thread; the exchange goes back to its pool after.</summary>
    public void Emit(HttpExchange exchange)
    {
        try
        {
            Handle(exchange, _buffer);
        }
        catch (Exception e)
        {
            _metrics.CountHttpDrop("output_error");
            _log.LogError(e, "could not encode an exchange");
        }
        finally
        {
            exchange.Dispose();
        }
    }

    /// <summary>A poll of the ring buffer ended: the sink may push out what it buffers.</summary>
    public void Idle() => _sink.Idle();

    internal void Handle(HttpExchange x, MessageBuffer buffer)
    {
        try
        {
            Encode(x, buffer);
        }
        finally
        {
            _parts.Release();
        }
    }

    /// <summary>The output's line: filter, decode, edit headers, classify and mask, then the body
    /// policy and the writer at a cap that fits the Kafka limit.</summary>
    private void Encode(HttpExchange x, MessageBuffer buffer)
    {
        AktoMessage.Prefetch(x);
        var reason = _filter.DropReason(x);
        if (reason is not null)
        {
            _metrics.ExchangesFiltered[reason].Increment();
            return;
        }
        var seconds = (long)((x.Request.FirstByteNs + (ulong)_realtimeOffsetNs) / 1_000_000_000UL);
        _details.ResetWrittenCount();
        var hasDetails = AktoMessage.CollectionDetails(x, _details);
        var budget = MessageBudget(_maxMessageBytes, hasDetails ? _details.WrittenCount : -1);
        var cap = _bodyCap;
        AktoMessage.Decode(x, cap);
        AktoMessage.Prepare(_parts, x, _identity);
        if (_policies?.Current is { } policy &&
            _classifier!.Classify(x, _parts, policy, cap) == ClassifyOutcome.Dropped)
        {
            _metrics.ExchangesFiltered["sensitive_data"].Increment();
            return;
        }
        for (var attempt = 0; ; attempt++)
        {
            buffer.ResetWrittenCount();
            AktoMessage.Write(buffer, x, _identity, seconds, cap, _parts);
            if (buffer.WrittenCount <= budget) break;
            if (attempt == 6)
            {
                _metrics.CountHttpDrop("message_too_large");
                return;
            }
            // JSON escaping can grow a body up to six times: cut harder until the message fits
            cap = Math.Min(cap, budget / 2) / (attempt + 2);
        }
        if (x.Request.Header("host") is { } host)
        {
            // the same host's string is the same object (HostStrings): skip the series lookup
            if (!ReferenceEquals(host, _lastHost))
            {
                _lastHostRequests = _metrics.HostRequests[host];
                _lastHost = host;
            }
            _lastHostRequests!.Increment();
        }
        var latency = (double)((long)ConnectionTable.MonotonicNowNs() - (long)x.Response.LastByteNs) / 1e9;
        _metrics.ExchangeLatency.Observe(Math.Max(latency, 0));
        _sink.Publish(buffer.WrittenSpan, _details.WrittenSpan);
    }

    /// <summary>Bytes the message value may take: the broker's limit covers the record with its
    /// collection_details header (detailsBytes long, -1 when there is none) and framing, not the
    /// value alone.</summary>
    public static int MessageBudget(int maxMessageBytes, int detailsBytes) =>
        maxMessageBytes - KafkaSink.RecordOverheadBytes -
        (detailsBytes < 0 ? 0 : detailsBytes + KafkaSink.CollectionDetailsHeader.Length);
}
