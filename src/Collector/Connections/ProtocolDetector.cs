using Collector.Events;
using Collector.Http;
using Collector.Http2;

namespace Collector.Connections;

/// <summary>Chooses a connection's protocol from its first bytes. HTTP/2 begins with the client's
/// preface (prior knowledge, or TLS with ALPN h2: the plaintext starts with it) or, seen from a
/// server that writes first, with its SETTINGS frame; an h2c upgrade starts as HTTP/1 and is
/// handed over by the HTTP/1 session. A connection joined mid-stream is HTTP/2 when its first
/// bytes are frames laid end to end.</summary>
internal static class ProtocolDetector
{
    /// <summary>Frames larger than this are not taken for the start of a joined stream (peers raise
    /// SETTINGS_MAX_FRAME_SIZE, rarely past 1 MiB).</summary>
    private const int JoinedMaxFrame = 1 << 20;

    /// <param name="joined">the connection existed before the collector.</param>
    /// <param name="midStream">the first bytes may be mid-stream: joined, or after a hole.</param>
    public static IProtocolSession Choose(ISessionHost host, StreamDirection direction, ReadOnlySpan<byte> first, bool joined, bool midStream)
    {
        if (IsPreface(first))
        {
            host.Metrics.Http2Connections["preface"].Increment();
            return new Http2Session(host, clientDirection: direction, Http2Start.Preface);
        }
        if (!midStream && IsServerSettings(first))
        {
            host.Metrics.Http2Connections["preface"].Increment();
            return new Http2Session(host, clientDirection: direction == StreamDirection.Egress ? StreamDirection.Ingress : StreamDirection.Egress,
                Http2Start.ServerFirst);
        }
        if (midStream && Http2FrameHeader.StartsWithFrames(first, JoinedMaxFrame))
        {
            host.Metrics.Http2Connections["joined"].Increment();
            return new Http2Session(host, clientDirection: null, Http2Start.Joined);
        }
        return new Http1Session(host, joined);
    }

    /// <summary>The preface, or the start of it when the first read was short.</summary>
    public static bool IsPreface(ReadOnlySpan<byte> first) =>
        first.Length >= Http2Frame.Preface.Length
            ? first.StartsWith(Http2Frame.Preface)
            : first.Length >= 4 && Http2Frame.Preface.StartsWith(first);

    /// <summary>A server's connection preface: a SETTINGS frame (not an acknowledgement) on stream 0.</summary>
    private static bool IsServerSettings(ReadOnlySpan<byte> first) =>
        first.Length >= Http2Frame.HeaderSize && first[3] == Http2Frame.Settings && first[4] == 0 &&
        Http2FrameHeader.StartsWithFrames(first, Http2Frame.DefaultMaxFrameSize);
}
