using Collector.Events;
using Collector.Http;
using Collector.Metrics;

namespace Collector.Connections;

/// <summary>A request paired with its response, ready for filtering and output. Made by the table
/// from a pool and returned to it by Dispose (with both messages); one built by hand works the same.</summary>
public sealed class HttpExchange : IDisposable
{
    private ConnectionId _connection;
    private ConnectionInfo? _info;
    private int _direction;
    private EventSource _source;
    private HttpMessage _request = null!, _response = null!;

    public required ConnectionId Connection { get => _connection; init => _connection = value; }
    public required ConnectionInfo? Info { get => _info; init => _info = value; }
    /// <summary>1: the traced process is the server (inbound); 2: it is the client (outbound).</summary>
    public required int Direction { get => _direction; init => _direction = value; }
    public required EventSource Source { get => _source; init => _source = value; }
    public required HttpMessage Request { get => _request; init => _request = value; }
    public required HttpMessage Response { get => _response; init => _response = value; }
    /// <summary>Where the output stage counts what it does to the bodies (decoding); set by the table.</summary>
    internal CollectorMetrics? Metrics { get; private set; }

    private const int MaxPooled = 4096;
    private static readonly ThreadCachedPool<HttpExchange> Pool = new(batch: 64, maxShared: MaxPooled);
    private bool _inPool;

    internal static HttpExchange Rent(ConnectionId connection, ConnectionInfo? info, int direction, EventSource source,
        HttpMessage request, HttpMessage response, CollectorMetrics metrics)
    {
        var x = Pool.TryRent() ?? new HttpExchange { Connection = connection, Info = info, Direction = direction, Source = source, Request = request, Response = response };
        x._inPool = false;
        x._connection = connection;
        x._info = info;
        x._direction = direction;
        x._source = source;
        x._request = request;
        x._response = response;
        x.Metrics = metrics;
        return x;
    }

    /// <summary>Returns both messages and the exchange to their pools; it must not be used after.</summary>
    public void Dispose()
    {
        if (_inPool) return;
        _request?.Dispose();
        _response?.Dispose();
        _request = _response = null!;
        _info = null;
        Metrics = null;
        _inPool = true;
        Pool.Return(this);
    }
}
