using Collector.Events;
using Collector.Http;
using Collector.Metrics;

namespace Collector.Connections;

/// <summary>The protocol spoken on a connection, from its bytes in order: HTTP/1.x (requests and
/// responses paired in order) or HTTP/2 (streams). The connection below it keeps the transport
/// (positions, gaps, TLS session switches, memory accounting) and hands it each direction's bytes
/// in order, with the exact size of every hole.</summary>
internal interface IProtocolSession : IDisposable
{
    /// <summary>The next bytes of one direction, in order (a ring-buffer sample, read during the call only).</summary>
    void OnData(StreamDirection direction, ReadOnlySpan<byte> data, ulong eventNs);

    /// <summary>Bytes are missing from a direction before its next OnData (the kernel's positions say how many).</summary>
    void OnGap(StreamDirection direction, long bytes, ulong eventNs);

    /// <summary>The connection is finished. closed: its fd was closed, which completes what only a
    /// close ends; otherwise it is forgotten and what is in progress is cut. What is left is counted.</summary>
    void Finish(bool closed, ulong nowNs, string reason);

    /// <summary>Memory shed: every byte held is dropped, the messages involved are marked lost.</summary>
    void Shed();

    /// <summary>Bytes this session holds in memory.</summary>
    long Retained { get; }

    /// <summary>A message has begun and not been handed on (what a reset of the session loses).</summary>
    bool HasMessagesInProgress { get; }
}

/// <summary>What a protocol session may ask of its connection.</summary>
internal interface ISessionHost
{
    ConnectionId Id { get; }
    CollectorMetrics Metrics { get; }
    HttpLimits Limits { get; }

    /// <summary>A request and its response, whole or marked: to the filters and the output (a lost
    /// placeholder on either side is counted instead, and cut bodies are counted). The host owns
    /// both messages from here on. direction: 1 the traced process is the server, 2 the client.</summary>
    void Emit(HttpMessage request, HttpMessage response, int direction);

    /// <summary>A message or stream lost or skipped in reassembly (a metric label).</summary>
    void CountDrop(string reason);

    /// <summary>The connection changes protocol (an h2c upgrade): later bytes go to next. The
    /// current session has already handed it what it held.</summary>
    void SwitchTo(IProtocolSession next);
}
