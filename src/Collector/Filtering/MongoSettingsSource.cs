using System.Net.Sockets;
using Collector.Configuration;
using Collector.Metrics;
using Microsoft.Extensions.Logging;
using MongoDB.Bson;
using MongoDB.Driver;

namespace Collector.Filtering;

/// <summary>The processor's header-value filter from Akto's MongoDB (AKTO_MONGO_CONN), as Akto's own
/// traffic collector reads it: the first document of the collection accounts_settings in the
/// account's database, its field filterHeaderValueMap (a document of header name → value string).
///
/// Read in the background, first at start and then every AKTO_MONGO_REFRESH_SECS; each read is
/// bounded by AKTO_MONGO_TIMEOUT_SECS (connecting included). The filter reads
/// <see cref="HeaderValueFilter"/>, one reference swapped whole, so the capture path never waits
/// for MongoDB. Until the first good read the filter is AKTO_HEADER_VALUE_FILTER's (or none); once
/// MongoDB has answered, its value wins, and when a read fails the last good value stays. Every
/// failed read is counted by reason; the log says when the state changes (first read, value
/// changed, a failure of a reason not logged since the last good read, readable again), not at
/// every retry.
///
/// The connection string can hold a password: it is never logged, and the driver's messages are
/// cleaned of it (<see cref="Sanitize"/>) before they are.</summary>
public sealed class MongoSettingsSource : ISettingsSource
{
    public const string CollectionName = "accounts_settings";
    public const string FieldName = "filterHeaderValueMap";

    /// <summary>The reasons a read fails, each a series of collector_mongo_settings_failures_total.</summary>
    public static readonly string[] FailureReasons = ["unreachable", "timeout", "protocol", "connection_lost", "auth", "server_error", "bad_document", "other"];

    private readonly MongoUrl _url;
    private readonly string _connectionString;
    private readonly string _database;
    private readonly TimeSpan _interval;
    private readonly TimeSpan _timeout;
    private readonly IReadOnlyDictionary<string, string> _fallback;
    private readonly CollectorMetrics _metrics;
    private readonly ILogger _log;
    private volatile IReadOnlyDictionary<string, string> _current;
    private volatile bool _fromMongo;
    private readonly HashSet<string> _reasonsLogged = [];  // while reads fail: each reason is logged once
    private bool _everRead;
    private Task _closing = Task.CompletedTask;

    public MongoSettingsSource(string connectionString, string database, TimeSpan interval, TimeSpan timeout,
        IReadOnlyDictionary<string, string> fallback, CollectorMetrics metrics, ILogger log)
    {
        _connectionString = connectionString;
        _url = Parse(connectionString);
        _database = database;
        _interval = interval;
        _timeout = timeout;
        _fallback = fallback;
        _current = fallback;
        _metrics = metrics;
        _log = log;
        foreach (var r in FailureReasons) _ = metrics.MongoFailures[r];
        Volatile.Write(ref metrics.MongoSettingsOk, 0);
        Volatile.Write(ref metrics.HeaderValueFilterEntries, fallback.Count);
    }

    public static MongoSettingsSource From(Settings s, IReadOnlyDictionary<string, string> fallback, CollectorMetrics metrics, ILogger log) =>
        new(s.MongoConnection ?? throw new ArgumentException("AKTO_MONGO_CONN is not set"), s.AccountId,
            s.MongoRefreshInterval, s.MongoTimeout, fallback, metrics, log);

    public IReadOnlyDictionary<string, string> HeaderValueFilter => _current;

    /// <summary>Whether the value in effect came from MongoDB (else from the environment).</summary>
    public bool FromMongo => _fromMongo;

    public string Description =>
        $"MongoDB ({Hosts(_url)}, database {_database}, {CollectionName}.{FieldName}, read every {_interval.TotalSeconds:0.###}s); " +
        $"until its first answer AKTO_HEADER_VALUE_FILTER ({(_fallback.Count == 0 ? "unset: every request kept" : $"{_fallback.Count} entries")})";

    /// <summary>A connection string that the driver refuses stops start-up, named and without its
    /// secrets.</summary>
    public static void Validate(string connectionString) => Parse(connectionString);

    private static MongoUrl Parse(string connectionString)
    {
        try
        {
            var url = MongoUrl.Create(connectionString);
            if (url.Servers is null || !url.Servers.Any())
                throw new SettingsException("AKTO_MONGO_CONN", "names no server");
            return url;
        }
        catch (Exception e) when (e is MongoConfigurationException or ArgumentException or FormatException or UriFormatException)
        {
            throw new SettingsException("AKTO_MONGO_CONN", "not a MongoDB connection string: " + Sanitize(e.Message, connectionString));
        }
    }

    private static string Hosts(MongoUrl url) =>
        url.Scheme == MongoDB.Driver.Core.Configuration.ConnectionStringScheme.MongoDBPlusSrv
            ? "srv " + string.Join(",", url.Servers.Select(s => s.Host))
            : string.Join(",", url.Servers.Select(s => $"{s.Host}:{s.Port}"));

    /// <summary>Reads until cancelled: at once, then every interval after the previous read ended
    /// (a slow server never stacks reads up).</summary>
    public async Task RunAsync(CancellationToken stop)
    {
        try
        {
            while (!stop.IsCancellationRequested)
            {
                await RefreshAsync(stop);
                await Task.Delay(_interval, stop);
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // stopping is how the loop ends
        }
    }

    /// <summary>One read. True when it succeeded (the value in effect is then MongoDB's).</summary>
    public async Task<bool> RefreshAsync(CancellationToken stop)
    {
        IReadOnlyDictionary<string, string> map;
        string what;
        try
        {
            var doc = await ReadAsync(stop);
            (map, what) = FilterOf(doc);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception e)
        {
            var (reason, detail) = Classify(e);
            Fail(reason, detail);
            return false;
        }
        Succeed(map, what);
        return true;
    }

    /// <summary>A client and cluster per read: between reads (minutes) nothing stays connected or
    /// monitors the server, every read proves the handshake afresh, and a read that hangs takes its
    /// sockets with it. (The driver keeps a client's cluster in a registry beyond the client's
    /// Dispose, pooled connection included, so the cluster is disposed explicitly.)</summary>
    private async Task<BsonDocument?> ReadAsync(CancellationToken stop)
    {
        // the previous read's cluster is closed before another opens (a failure there fails this read)
        var previous = _closing;
        _closing = Task.CompletedTask;
        await previous.WaitAsync(stop);

        var settings = MongoClientSettings.FromUrl(_url);
        settings.ApplicationName = "akto-traffic-collector";
        settings.ServerSelectionTimeout = _timeout;
        settings.ConnectTimeout = _timeout;
        settings.SocketTimeout = _timeout;
        settings.HeartbeatTimeout = _timeout;
        settings.MaxConnectionPoolSize = 2;
        var client = new MongoClient(settings);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(stop);
        deadline.CancelAfter(_timeout);
        try
        {
            var collection = client.GetDatabase(_database).GetCollection<BsonDocument>(CollectionName);
            return await collection.Find(FilterDefinition<BsonDocument>.Empty).Limit(1).FirstOrDefaultAsync(deadline.Token);
        }
        catch (Exception e) when (e is TimeoutException || (e is OperationCanceledException && !stop.IsCancellationRequested))
        {
            // Our deadline or the driver's server selection ran out first (they are the same length).
            // The server monitor's last handshake says why: refused, garbage, or really no answer.
            var handshake = client.Cluster.Description.Servers.Select(s => s.HeartbeatException).FirstOrDefault(h => h is not null);
            var message = $"no answer within AKTO_MONGO_TIMEOUT_SECS ({_timeout.TotalSeconds:0.###}s)" +
                          (handshake is null ? "" : "; the server's handshake failed: " + Innermost(handshake).Message);
            throw new TimeoutException(message, handshake);
        }
        finally
        {
            // Closing ends the read's server session (endSessions), on a fresh connection when the
            // read's own is stuck: a slow server would stretch the read past its bound, so it
            // closes in the background and the next read waits for it.
            _closing = Task.Run(() =>
            {
                ClusterRegistry.Instance.UnregisterAndDisposeCluster(client.Cluster);
                client.Dispose();
            });
        }
    }

    /// <summary>filterHeaderValueMap as the filter's map. No document, or no field (or null): no
    /// filter, as Akto's collector reads it (the dashboard unsets the field to clear the filter).
    /// Anything else that is not a document of strings is refused and the last good value stays.</summary>
    internal static (IReadOnlyDictionary<string, string> Map, string What) FilterOf(BsonDocument? doc)
    {
        var map = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        if (doc is null) return (map, $"{CollectionName} has no document: no header-value filter");
        if (!doc.TryGetValue(FieldName, out var field) || field.IsBsonNull)
            return (map, $"{FieldName} is not set: no header-value filter");
        if (!field.IsBsonDocument)
            throw new BadSettingsDocumentException($"{FieldName} is a BSON {field.BsonType}, not a document of header → value");
        foreach (var e in field.AsBsonDocument)
        {
            if (!e.Value.IsString)
                throw new BadSettingsDocumentException($"{FieldName}.{e.Name} is a BSON {e.Value.BsonType}, not a string");
            if (!map.TryAdd(e.Name, e.Value.AsString))
                throw new BadSettingsDocumentException($"{FieldName} lists the header '{e.Name}' twice (names are compared in any case)");
        }
        return (map, map.Count == 0 ? $"{FieldName} is empty: no header-value filter" : $"{map.Count} entries ({string.Join(", ", map.Keys)})");
    }

    private void Succeed(IReadOnlyDictionary<string, string> map, string what)
    {
        _metrics.MongoReads.Increment();
        Volatile.Write(ref _metrics.MongoSettingsOk, 1);
        var changed = !_fromMongo || !SameMap(map, _current);
        _current = map;
        _fromMongo = true;
        Volatile.Write(ref _metrics.HeaderValueFilterEntries, map.Count);
        if (_reasonsLogged.Count > 0)
            _log.LogInformation("settings from MongoDB: {Collection} readable again; header-value filter: {What}", CollectionName, what);
        else if (!_everRead)
            _log.LogInformation("settings from MongoDB: header-value filter from database {Database}: {What}", _database, what);
        else if (changed)
            _log.LogInformation("settings from MongoDB: header-value filter changed: {What}", what);
        _reasonsLogged.Clear();
        _everRead = true;
    }

    private void Fail(string reason, string detail)
    {
        _metrics.MongoFailures[reason].Increment();
        Volatile.Write(ref _metrics.MongoSettingsOk, 0);
        if (!_reasonsLogged.Add(reason)) return;
        var kept = _fromMongo
            ? $"keeping the last value read ({_current.Count} entries)"
            : $"keeping AKTO_HEADER_VALUE_FILTER's ({(_fallback.Count == 0 ? "none: every request kept" : $"{_fallback.Count} entries")})";
        _log.LogWarning("settings from MongoDB: cannot read {Database}.{Collection} ({Reason}: {Detail}); {Kept}; retrying every {Interval}s, " +
                        "further failures of this kind are counted in collector_mongo_settings_failures_total, not logged",
            _database, CollectionName, reason, Sanitize(detail, _connectionString), kept, _interval.TotalSeconds);
    }

    private static bool SameMap(IReadOnlyDictionary<string, string> a, IReadOnlyDictionary<string, string> b) =>
        a.Count == b.Count && a.All(kv => b.TryGetValue(kv.Key, out var v) && v == kv.Value);

    /// <summary>Why a read failed, from the driver's exception and what it wraps.</summary>
    internal static (string Reason, string Detail) Classify(Exception e)
    {
        var chain = Chain(e).ToList();
        // each wrapper's message once, and none already said by the one around it
        var messages = new List<string>();
        foreach (var m in chain.Select(x => x.Message))
            if (!messages.Any(earlier => earlier.Contains(m, StringComparison.Ordinal))) messages.Add(m);
        var detail = string.Join(" <- ", messages.Take(3));
        if (e is BadSettingsDocumentException) return ("bad_document", e.Message);
        if (chain.Any(x => x is MongoAuthenticationException)) return ("auth", detail);
        if (chain.OfType<MongoCommandException>().FirstOrDefault() is { } c) return ("server_error", $"{c.CodeName} ({c.Code}): {c.ErrorMessage}");
        if (chain.Any(x => x is FormatException or BsonSerializationException or InvalidDataException or MongoInternalException
                or BsonException))
            return ("protocol", detail);
        if (chain.OfType<SocketException>().FirstOrDefault() is { } s)
            return (s.SocketErrorCode switch
            {
                SocketError.ConnectionReset or SocketError.ConnectionAborted or SocketError.Shutdown => "connection_lost",
                SocketError.TimedOut => "timeout",
                _ => "unreachable",
            }, detail);
        if (chain.Any(x => x is EndOfStreamException)) return ("connection_lost", detail);
        if (chain.Any(x => x is TimeoutException or MongoExecutionTimeoutException)) return ("timeout", detail);
        if (chain.Any(x => x is MongoConnectionException or IOException)) return ("connection_lost", detail);
        return ("other", $"{e.GetType().Name}: {detail}");
    }

    private static IEnumerable<Exception> Chain(Exception e)
    {
        for (Exception? x = e; x is not null; x = x.InnerException) yield return x;
    }

    private static Exception Innermost(Exception e) => Chain(e).Last();

    /// <summary>The text without the connection string, its user:password part or the password
    /// (as written and URL-decoded).</summary>
    public static string Sanitize(string text, string connectionString)
    {
        var secrets = new List<string> { connectionString };
        var at = connectionString.IndexOf('@');
        var scheme = connectionString.IndexOf("://", StringComparison.Ordinal);
        if (at > 0 && scheme >= 0 && scheme + 3 < at)
        {
            var userInfo = connectionString[(scheme + 3)..at];
            secrets.Add(userInfo);
            var colon = userInfo.IndexOf(':');
            if (colon >= 0)
            {
                var password = userInfo[(colon + 1)..];
                secrets.Add(password);
                secrets.Add(Uri.UnescapeDataString(password));
                secrets.Add(Uri.UnescapeDataString(userInfo));
            }
        }
        foreach (var secret in secrets.Where(x => x.Length > 0).Distinct().OrderByDescending(x => x.Length))
            text = text.Replace(secret, "***", StringComparison.Ordinal);
        return text.Replace('\n', ' ').Replace('\r', ' ');
    }
}

/// <summary>accounts_settings answered, but not with the shape the filter reads.</summary>
public sealed class BadSettingsDocumentException(string message) : Exception(message);
