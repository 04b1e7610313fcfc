using Collector.Events;
using Collector.Http;

namespace Collector.Connections;

/// <summary>One direction of one connection: its parser and the kernel's byte position, from
/// which gaps are exact.
///
/// Why no System.IO.Pipelines pipe here: a ring buffer sample lives only during the callback, so
/// whatever must outlive it is copied once; the parser reads the sample in place and copies
/// only what it keeps (header fields, body up to the cap) and, when an event ends inside a line,
/// that line's bytes. A pipe would add a second copy of every byte (event → pipe → message) and
/// its segments would outlive the bytes they hold.</summary>
internal sealed class DirectionStream : IDisposable
{
    public DirectionStream(StreamDirection direction, HttpLimits limits)
    {
        Direction = direction;
        Parser = new HttpStreamParser(limits);
    }

    public StreamDirection Direction { get; }
    public HttpStreamParser Parser { get; }

    /// <summary>Position (within this direction) of the next byte expected from the kernel.</summary>
    public ulong NextPosition { get; set; }

    /// <summary>Kernel time of the last event at which messages of this direction may have gone by
    /// unseen (a gap the parser could not stay in step across, bytes skipped while resynchronizing).</summary>
    public ulong LossNs { get; set; }

    public void Dispose() => Parser.Release();
}
