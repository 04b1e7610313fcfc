using System.Buffers;
using System.Threading.Channels;
using Collector.Connections;
using Collector.Filtering;
using Collector.Metrics;
using Microsoft.Extensions.Logging;

namespace Collector.Output;

/// <summary>Where encoded Akto messages go: stdout (no broker configured) or Kafka.</summary>
public interface IMessageSink : IAsyncDisposable
{
    /// <summary>Takes one encoded message; the sink copies what it keeps.</summary>
    void Publish(ReadOnlySpan<byte> message, string? collectionDetails);
    /// <summary>Delivers what is queued, waiting at most grace; returns how many were left undelivered.</summary>
    Task<long> FlushAsync(TimeSpan grace);
    /// <summary>Whether the sink can deliver now (the broker answered); null when not applicable.</summary>
    bool? Reachable { get; }
    /// <summary>The output queue ran empty: a good moment to push out what is buffered.</summary>
    void Idle();
}

/// <summary>JSON lines on stdout: the local sink and `make run`'s output.</summary>
public sealed class StdoutSink : IMessageSink
{
    private readonly Stream _out = Console.OpenStandardOutput();
    private readonly BufferedStream _buffer;

    public StdoutSink() => _buffer = new BufferedStream(_out, 1 << 16);

    public bool? Reachable => null;

    public void Publish(ReadOnlySpan<byte> message, string? collectionDetails)
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

/// <summary>The stage after reassembly: a bounded queue off the event thread, then filter → encode
/// → sink on the output thread. Full queue: the exchange is counted and dropped, never blocking
/// the kernel reader.</summary>
public sealed class OutputPipeline
{
    private readonly Channel<HttpExchange> _queue;
    private readonly ExchangeFilter _filter;
    private readonly IMessageSink _sink;
    private readonly CollectorMetrics _metrics;
    private readonly AktoIdentity _identity;
    private readonly int _bodyCap;
    private readonly int _maxMessageBytes;
    private readonly ILogger _log;
    private readonly long _realtimeOffsetNs;

    public OutputPipeline(ExchangeFilter filter, IMessageSink sink, CollectorMetrics metrics, AktoIdentity identity,
        int bodyCap, int maxMessageBytes, ILogger log, int capacity = 16384)
    {
        _filter = filter;
        _sink = sink;
        _metrics = metrics;
        _identity = identity;
        _bodyCap = bodyCap;
        _maxMessageBytes = maxMessageBytes;
        _log = log;
        _queue = Channel.CreateBounded<HttpExchange>(new BoundedChannelOptions(capacity)
        {
            SingleReader = true,
            SingleWriter = true,
            FullMode = BoundedChannelFullMode.Wait, // TryWrite fails instead of waiting: counted below
        });
        // kernel timestamps are CLOCK_MONOTONIC; the message wants Unix time
        _realtimeOffsetNs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1_000_000 - (long)ConnectionTable.MonotonicNowNs();
    }

    public long Processed;

    /// <summary>Called on the event thread.</summary>
    public void Enqueue(HttpExchange exchange)
    {
        if (_queue.Writer.TryWrite(exchange)) return;
        _metrics.OutputQueueDrops.Increment();
        exchange.Dispose();
    }

    public void Complete() => _queue.Writer.TryComplete();

    public async Task RunAsync()
    {
        var buffer = new ArrayBufferWriter<byte>(16384);
        await foreach (var x in _queue.Reader.ReadAllAsync())
        {
            try
            {
                Handle(x, buffer);
            }
            catch (Exception e)
            {
                _metrics.CountHttpDrop("output_error");
                _log.LogError(e, "could not encode an exchange");
            }
            finally
            {
                x.Dispose();
                Interlocked.Increment(ref Processed);
            }
            if (!_queue.Reader.TryPeek(out _)) _sink.Idle();
        }
    }

    internal void Handle(HttpExchange x, ArrayBufferWriter<byte> buffer)
    {
        var reason = _filter.DropReason(x);
        if (reason is not null)
        {
            _metrics.ExchangesFiltered[reason].Increment();
            return;
        }
        var seconds = (long)((x.Request.FirstByteNs + (ulong)_realtimeOffsetNs) / 1_000_000_000UL);
        var cap = _bodyCap;
        for (var attempt = 0; ; attempt++)
        {
            buffer.ResetWrittenCount();
            AktoMessage.Write(buffer, x, _identity, seconds, cap);
            if (buffer.WrittenCount <= _maxMessageBytes) break;
            if (attempt == 6)
            {
                _metrics.CountHttpDrop("message_too_large");
                return;
            }
            // JSON escaping can grow a body up to six times: cut harder until the message fits
            cap = Math.Min(cap, _maxMessageBytes / 2) / (attempt + 2);
        }
        if (x.Request.Header("host") is { } host)
            _metrics.HostRequests[host].Increment();
        var latency = (double)((long)ConnectionTable.MonotonicNowNs() - (long)x.Response.LastByteNs) / 1e9;
        _metrics.ExchangeLatency.Observe(Math.Max(latency, 0));
        _sink.Publish(buffer.WrittenSpan, AktoMessage.CollectionDetails(x));
    }
}
