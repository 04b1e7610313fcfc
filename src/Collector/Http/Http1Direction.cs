using Collector.Events;

namespace Collector.Http;

/// <summary>One direction of an HTTP/1 session: its parser, and when messages may last have gone
/// by unseen.
///
/// The parser reads each ring-buffer sample in place (a sample lives only during the callback)
/// and copies only what it keeps: header fields, body up to the cap. The bytes that must outlive
/// their sample, a line cut by an event's end or what waits behind an Upgrade request, go through
/// this direction's System.IO.Pipelines pipe (HttpStreamParser's CarriedBytes). Carrying every
/// byte through the pipe was measured to copy each byte twice (event → pipe → message).</summary>
internal sealed class Http1Direction : IDisposable
{
    public Http1Direction(StreamDirection direction, HttpLimits limits)
    {
        Direction = direction;
        Parser = new HttpStreamParser(limits);
    }

    public StreamDirection Direction { get; }
    public HttpStreamParser Parser { get; }

    /// <summary>Kernel time of the last event at which messages of this direction may have gone by
    /// unseen (a gap the parser could not stay in step across, bytes skipped while resynchronizing).</summary>
    public ulong LossNs { get; set; }

    public void Dispose() => Parser.Release();
}
