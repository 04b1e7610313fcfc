using System.IO.Pipelines;
using Collector.Http;

namespace Collector.Connections;

/// <summary>The bytes of one direction of one connection: a pipe that the event reader writes
/// into and the HTTP parser reads from, with the kernel's byte positions to find gaps.</summary>
internal sealed class DirectionStream : IDisposable
{
    // Never pause the writer: the collector enforces one memory budget across all connections
    // itself (ConnectionTable), and the event reader must never block.
    private static readonly PipeOptions Options = new(
        pauseWriterThreshold: 0, resumeWriterThreshold: 0, minimumSegmentSize: 4096,
        readerScheduler: PipeScheduler.Inline, writerScheduler: PipeScheduler.Inline,
        useSynchronizationContext: false);

    private readonly Pipe _pipe = new(Options);

    public DirectionStream(HttpLimits limits) => Parser = new HttpStreamParser(limits);

    public HttpStreamParser Parser { get; }

    /// <summary>Position (within this direction) of the next byte expected from the kernel.</summary>
    public ulong NextPosition { get; set; }

    /// <summary>Bytes written to the pipe and not yet consumed by the parser.</summary>
    public long Buffered { get; private set; }

    public bool HasBufferedBytes => Buffered > 0;

    public void Write(ReadOnlySpan<byte> data)
    {
        if (Buffered == 0 && Parser.AtMessageBoundary)
            Parser.NextMessageStartNs = 0; // the next message starts in this event: set by Process
        var span = _pipe.Writer.GetSpan(data.Length);
        if (span.Length >= data.Length)
        {
            data.CopyTo(span);
            _pipe.Writer.Advance(data.Length);
        }
        else
        {
            // GetSpan may hand back less than asked for large writes: copy in pieces
            var rest = data;
            while (!rest.IsEmpty)
            {
                span = _pipe.Writer.GetSpan(Math.Min(rest.Length, 65536));
                var n = Math.Min(span.Length, rest.Length);
                rest[..n].CopyTo(span);
                _pipe.Writer.Advance(n);
                rest = rest[n..];
            }
        }
        Buffered += data.Length;
    }

    /// <summary>Hands what was written to the parser; whatever it cannot use yet stays in the pipe.</summary>
    public void Process(ulong eventNs, IHttpMessageSink sink)
    {
        if (Parser.NextMessageStartNs == 0) Parser.NextMessageStartNs = eventNs;
        var flush = _pipe.Writer.FlushAsync();
        if (!flush.IsCompleted) flush.AsTask().GetAwaiter().GetResult(); // cannot happen without a pause threshold
        if (!_pipe.Reader.TryRead(out var result)) return;
        var buffer = result.Buffer;
        Parser.Parse(buffer, eventNs, sink, out var consumed, out var examined);
        Buffered = buffer.Slice(consumed).Length;
        _pipe.Reader.AdvanceTo(consumed, examined);
    }

    /// <summary>Drops every buffered byte (memory shed, gap, or the stream became opaque).</summary>
    public long Discard()
    {
        var dropped = Buffered;
        if (Buffered > 0)
        {
            var flush = _pipe.Writer.FlushAsync();
            if (!flush.IsCompleted) flush.AsTask().GetAwaiter().GetResult();
            if (_pipe.Reader.TryRead(out var result))
                _pipe.Reader.AdvanceTo(result.Buffer.End);
            Buffered = 0;
        }
        return dropped;
    }

    public void Dispose()
    {
        Parser.Reset();
        _pipe.Writer.Complete();
        _pipe.Reader.Complete();
    }
}
