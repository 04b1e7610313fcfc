using System.Buffers;
using System.IO.Pipelines;

namespace Collector.Http;

/// <summary>The bytes of one direction that must outlive their ring-buffer sample: a line cut by
/// the end of an event, or what a client sent after an Upgrade request while the answer is
/// awaited. They travel through a System.IO.Pipelines pipe: written with GetSpan/Advance as
/// events arrive, read back as a ReadOnlySequence when the line is complete.
///
/// Everything else is parsed in place from the sample (bodies go straight into their message), so
/// the pipe holds at most one header line or one upgrade wait, bounded by HTTP_MAX_HEADER_BYTES,
/// instead of every byte twice.</summary>
internal sealed class CarriedBytes
{
    // Never pause the writer: the parser bounds what it carries itself, and the event reader
    // must never block.
    private static readonly PipeOptions Options = new(
        pool: MemoryPool<byte>.Shared, pauseWriterThreshold: 0, resumeWriterThreshold: 0,
        minimumSegmentSize: 4096, readerScheduler: PipeScheduler.Inline, writerScheduler: PipeScheduler.Inline,
        useSynchronizationContext: false);

    private Pipe? _pipe;
    private byte[]? _flat; // a copy when the carried bytes span two pipe segments
    private bool _reading;
    private ReadOnlySequence<byte> _read; // what the open read returned

    /// <summary>Bytes carried.</summary>
    public int Length { get; private set; }

    /// <summary>Memory held for them (for the memory budget).</summary>
    public int Retained => Length == 0 ? 0 : Math.Max(Length, 4096) + (_flat?.Length ?? 0);

    public void Append(ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty) return;
        EndRead();
        var writer = (_pipe ??= new Pipe(Options)).Writer;
        while (!data.IsEmpty)
        {
            var span = writer.GetSpan(Math.Min(data.Length, 4096));
            var n = Math.Min(span.Length, data.Length);
            data[..n].CopyTo(span);
            writer.Advance(n);
            data = data[n..];
            Length += n;
        }
        var flush = writer.FlushAsync();
        if (!flush.IsCompleted) flush.AsTask().GetAwaiter().GetResult(); // cannot wait: no pause threshold
    }

    /// <summary>The carried bytes as one span, valid until the next Append, Consume or Clear.</summary>
    public ReadOnlySpan<byte> Contiguous()
    {
        if (Length == 0) return default;
        var buffer = Read();
        if (buffer.IsSingleSegment) return buffer.FirstSpan;
        if (_flat is null || _flat.Length < Length)
        {
            if (_flat is not null) BufferPool.Return(_flat);
            _flat = BufferPool.Rent(Length);
        }
        buffer.CopyTo(_flat);
        return _flat.AsSpan(0, Length);
    }

    /// <summary>Drops the first count bytes (parsed).</summary>
    public void Consume(int count)
    {
        if (count <= 0 || Length == 0) return;
        count = Math.Min(count, Length);
        var buffer = Read();
        _reading = false;
        _pipe!.Reader.AdvanceTo(buffer.GetPosition(count));
        Length -= count;
        if (Length == 0) ReleaseFlat();
    }

    public void Clear() => Consume(Length);

    /// <summary>Returns the pipe's memory; the parser is done with this direction.</summary>
    public void Release()
    {
        if (_pipe is not null)
        {
            EndRead();
            _pipe.Writer.Complete();
            _pipe.Reader.Complete();
            _pipe = null;
        }
        Length = 0;
        ReleaseFlat();
    }

    // The read stays open until bytes are consumed or appended: after AdvanceTo(start, end) a
    // pipe offers the same bytes again only once new ones arrive.
    private ReadOnlySequence<byte> Read()
    {
        if (_reading) return _read;
        if (!_pipe!.Reader.TryRead(out var result))
            throw new InvalidOperationException("carried bytes missing from their pipe");
        _reading = true;
        _read = result.Buffer;
        return _read;
    }

    // A read must be closed with AdvanceTo before the next write or read: nothing consumed.
    private void EndRead()
    {
        if (!_reading) return;
        _reading = false;
        _pipe!.Reader.AdvanceTo(_read.Start, _read.End);
    }

    private void ReleaseFlat()
    {
        if (_flat is null) return;
        BufferPool.Return(_flat);
        _flat = null;
    }
}
