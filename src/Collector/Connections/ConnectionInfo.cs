using System.Net;
using Collector.Events;
using Collector.Http;
using Collector.Metrics;

namespace Collector.Connections;

/// <summary>(tgid, fd, generation): the kernel changes the generation when an fd number is reused,
/// so two connections never merge.</summary>
public readonly record struct ConnectionId(uint Tgid, uint Fd, uint Generation);

/// <summary>What the kernel told us about a connection when it first saw it.</summary>
public sealed record ConnectionInfo(
    IPAddress LocalAddress, int LocalPort, IPAddress RemoteAddress, int RemotePort,
    ConnectionOrigin Origin, string ProcessName)
{
    private string? _local, _remote;

    /// <summary>"addr:port" ("[v6]:port"), made once per connection.</summary>
    public string LocalEndpoint => _local ??= Endpoint(LocalAddress, LocalPort);
    public string RemoteEndpoint => _remote ??= Endpoint(RemoteAddress, RemotePort);

    /// <summary>The encoder's JSON strings of the endpoints and process name, made once per
    /// connection (every exchange on it repeats them). Not part of the record's value.</summary>
    internal byte[]? LocalEndpointJson, RemoteEndpointJson, ProcessNameJson;

    /// <summary>The encoder's fields after the payloads, the same for every exchange of this
    /// connection in one direction (addresses, identity, process): made once, copied in one piece.
    /// The time, which changes, goes at AktoTailSplit. Keyed by what it was made from.</summary>
    internal byte[]? AktoTail;
    internal int AktoTailSplit, AktoTailDirection;
    internal ConnectionId AktoTailConnection;
    internal object? AktoTailIdentity;

    public bool Equals(ConnectionInfo? other) =>
        other is not null && LocalAddress.Equals(other.LocalAddress) && LocalPort == other.LocalPort &&
        RemoteAddress.Equals(other.RemoteAddress) && RemotePort == other.RemotePort &&
        Origin == other.Origin && ProcessName == other.ProcessName;

    public override int GetHashCode() => HashCode.Combine(LocalAddress, LocalPort, RemoteAddress, RemotePort, Origin, ProcessName);

    public static string Endpoint(IPAddress address, int port) =>
        address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6
            ? $"[{address}]:{port}"
            : $"{address}:{port}";
}

