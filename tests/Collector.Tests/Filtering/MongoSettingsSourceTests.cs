using System.Diagnostics;
using System.Net;
using Collector.Configuration;
using Collector.Connections;
using Collector.Events;
using Collector.Filtering;
using Collector.Http;
using Collector.Metrics;
using Collector.Tests.Support;
using Microsoft.Extensions.Logging;

namespace Collector.Tests.Filtering;

/// <summary>The MongoDB settings source with the real driver (MongoDB.Driver 3.14) on the wire
/// against <see cref="ScriptedMongoServer"/>: reads, the server down, going away, slow, answering
/// garbage or the wrong BSON types, refusing the login. No real mongod runs here (none can be
/// installed); what the driver does is real, what the server says is scripted.</summary>
public sealed class MongoSettingsSourceTests
{
    private static readonly IReadOnlyDictionary<string, string> None = new Dictionary<string, string>();
    private static readonly IReadOnlyDictionary<string, string> Staging = new Dictionary<string, string> { ["x-env"] = "staging" };
    private static readonly IReadOnlyDictionary<string, string> Prod = new Dictionary<string, string> { ["x-env"] = "prod", ["X-Team"] = "payments" };

    private readonly CollectorMetrics _metrics = new();
    private readonly ListLogger _log = new();

    private MongoSettingsSource Source(string connectionString, IReadOnlyDictionary<string, string>? fallback = null,
        double timeoutSeconds = 2, double intervalSeconds = 0.2) =>
        new(connectionString, "1000000", TimeSpan.FromSeconds(intervalSeconds), TimeSpan.FromSeconds(timeoutSeconds),
            fallback ?? None, _metrics, _log);

    private long Failures(string reason) => _metrics.MongoFailures[reason].Value;
    private long AllFailures => _metrics.MongoFailures.Total;
    private string Log => string.Join("\n", _log.Entries.Select(e => $"{e.Level}: {e.Message}"));
    private List<string> Warnings => _log.Entries.Where(e => e.Level == LogLevel.Warning).Select(e => e.Message).ToList();

    private string SingleWarning()
    {
        var w = Warnings;
        Assert.True(w.Count == 1, $"{w.Count} warnings:\n{Log}");
        return w[0];
    }

    private static async Task Until(Func<bool> condition, string what, double seconds = 30)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException("waited in vain for " + what);
            await Task.Delay(50);
        }
    }

    private static void AssertMap(IReadOnlyDictionary<string, string> expected, IReadOnlyDictionary<string, string> actual)
    {
        Assert.Equal(expected.Count, actual.Count);
        foreach (var (k, v) in expected) Assert.Equal(v, actual[k]);
    }

    [Fact]
    public async Task Reads_filterHeaderValueMap_from_the_first_accounts_settings_document_of_the_account_database()
    {
        await using var server = new ScriptedMongoServer();
        server.SetFilter(Prod);
        var source = Source(server.ConnectionString);
        Assert.True(await source.RefreshAsync(CancellationToken.None), Log);
        AssertMap(Prod, source.HeaderValueFilter);
        Assert.Equal("payments", source.HeaderValueFilter["x-team"]); // names in any case, as the filter compares them
        Assert.True(source.FromMongo);
        Assert.Equal(1, _metrics.MongoReads.Value);
        Assert.Equal(0, AllFailures);
        Assert.Equal(1, _metrics.MongoSettingsOk);
        Assert.Equal(2, _metrics.HeaderValueFilterEntries);
        // what went over the wire: a find on 1000000.accounts_settings, empty filter, one document
        var find = Assert.Single(server.Commands, c => c.Command == "find");
        Assert.Equal("1000000", find.Database);
        Assert.Equal("accounts_settings", find.Body["find"]);
        Assert.Empty(Assert.IsType<BsonRead>(find.Body["filter"]).Elements);
        Assert.Equal(1, Convert.ToInt32(find.Body["limit"]));
        Assert.Contains(server.Commands, c => c.Command is "hello" or "isMaster" or "ismaster");
        Assert.Single(_log.Lines, l => l.Text.Contains("header-value filter from database 1000000: 2 entries (x-env, X-Team)"));
        Assert.Empty(server.Errors); // nothing the driver sent was beyond the script
    }

    [Fact]
    public async Task No_document_no_field_a_null_field_or_an_empty_map_is_a_good_read_of_no_filter_and_wins_over_the_environment()
    {
        await using var server = new ScriptedMongoServer();
        var source = Source(server.ConnectionString, Staging);
        AssertMap(Staging, source.HeaderValueFilter); // before MongoDB answered
        server.SetSettingsDocument(null);
        Assert.True(await source.RefreshAsync(CancellationToken.None), Log);
        Assert.Empty(source.HeaderValueFilter);
        server.SetFilter(Prod);
        Assert.True(await source.RefreshAsync(CancellationToken.None), Log);
        AssertMap(Prod, source.HeaderValueFilter);
        server.SetFilter(null); // the dashboard unsets the field to clear the filter
        Assert.True(await source.RefreshAsync(CancellationToken.None), Log);
        Assert.Empty(source.HeaderValueFilter);
        server.SetSettingsDocument(new BsonWriter().Int32("_id", 1_000_000).Null("filterHeaderValueMap"));
        Assert.True(await source.RefreshAsync(CancellationToken.None), Log);
        Assert.Empty(source.HeaderValueFilter);
        server.SetFilter(new Dictionary<string, string>());
        Assert.True(await source.RefreshAsync(CancellationToken.None), Log);
        Assert.Empty(source.HeaderValueFilter);
        Assert.Equal(5, _metrics.MongoReads.Value);
        Assert.Equal(0, AllFailures);
        Assert.Equal(0, _metrics.HeaderValueFilterEntries);
        Assert.Contains(_log.Lines, l => l.Text.Contains("accounts_settings has no document: no header-value filter"));
        Assert.Contains(_log.Lines, l => l.Text.Contains("header-value filter changed: filterHeaderValueMap is not set"));
    }

    [Fact]
    public async Task Server_down_at_start_keeps_the_environment_value_counts_logs_once_and_picks_the_value_up_when_it_comes()
    {
        var port = Repo.FreePort();
        var source = Source($"mongodb://127.0.0.1:{port}/admini", Staging, timeoutSeconds: 1, intervalSeconds: 0.2);
        using var stop = new CancellationTokenSource();
        var loop = Task.Run(() => source.RunAsync(stop.Token));
        try
        {
            await Until(() => Failures("unreachable") >= 3, "three failed reads");
            AssertMap(Staging, source.HeaderValueFilter);
            Assert.False(source.FromMongo);
            Assert.Equal(0, _metrics.MongoSettingsOk);
            Assert.True(AllFailures == Failures("unreachable"), Log);
            var warning = SingleWarning();
            Assert.Contains("(unreachable: ", warning);
            Assert.Contains("keeping AKTO_HEADER_VALUE_FILTER's (1 entries)", warning);

            await using var server = new ScriptedMongoServer(port);
            server.SetFilter(Prod);
            await Until(() => _metrics.MongoReads.Value >= 1, "a read once the server is up");
            AssertMap(Prod, source.HeaderValueFilter);
            Assert.True(source.FromMongo);
            Assert.Equal(1, _metrics.MongoSettingsOk);
            Assert.Single(_log.Lines, l => l.Text.Contains("readable again"));
        }
        finally
        {
            stop.Cancel();
            await loop;
        }
        SingleWarning();
    }

    [Fact]
    public async Task Server_going_away_after_a_good_read_keeps_the_last_value_and_counts_every_failed_read()
    {
        var server = new ScriptedMongoServer();
        server.SetFilter(Prod);
        var source = Source(server.ConnectionString, Staging, timeoutSeconds: 1, intervalSeconds: 0.2);
        using var stop = new CancellationTokenSource();
        var loop = Task.Run(() => source.RunAsync(stop.Token));
        try
        {
            await Until(() => _metrics.MongoReads.Value >= 2, "two good reads");
            await server.DisposeAsync();
            await Until(() => AllFailures >= 3, "three failed reads");
            AssertMap(Prod, source.HeaderValueFilter);
            Assert.True(source.FromMongo);
            Assert.Equal(0, _metrics.MongoSettingsOk);
            var warning = SingleWarning();
            Assert.Contains("keeping the last value read (2 entries)", warning);
        }
        finally
        {
            stop.Cancel();
            await loop;
        }
        Assert.True(Failures("unreachable") >= 2, Log); // the first may see the connection cut
    }

    [Fact]
    public async Task A_slow_answer_is_cut_at_the_timeout_and_the_filter_never_waits_for_it()
    {
        await using var server = new ScriptedMongoServer();
        server.SetFilter(Prod);
        var source = Source(server.ConnectionString, timeoutSeconds: 1);
        Assert.True(await source.RefreshAsync(CancellationToken.None), Log);

        server.Fault = MongoFault.SlowFind;
        server.FindDelay = TimeSpan.FromSeconds(60);
        var finds = server.Finds;
        var clock = Stopwatch.StartNew();
        var read = source.RefreshAsync(CancellationToken.None);
        await server.WaitForFindsAsync(finds + 1, TimeSpan.FromSeconds(10));
        // the server holds the query: the value in effect is read at once, many times over
        var reads = Stopwatch.StartNew();
        for (var i = 0; i < 100_000; i++) AssertMap(Prod, source.HeaderValueFilter);
        Assert.True(reads.ElapsedMilliseconds < 1000, $"{reads.ElapsedMilliseconds} ms for 100k reads of the filter");
        Assert.False(read.IsCompleted);

        Assert.False(await read, Log);
        Assert.InRange(clock.Elapsed.TotalSeconds, 0.9, 3);
        Assert.Equal(1, Failures("timeout"));
        Assert.Equal(1, AllFailures);
        AssertMap(Prod, source.HeaderValueFilter);
    }

    [Fact]
    public async Task A_server_that_never_answers_the_handshake_is_a_bounded_timeout()
    {
        await using var server = new ScriptedMongoServer { Fault = MongoFault.SilentOnHello };
        var source = Source(server.ConnectionString, Staging, timeoutSeconds: 1);
        var clock = Stopwatch.StartNew();
        Assert.False(await source.RefreshAsync(CancellationToken.None));
        Assert.InRange(clock.Elapsed.TotalSeconds, 0.9, 3);
        Assert.Equal(1, Failures("timeout"));
        AssertMap(Staging, source.HeaderValueFilter);
    }

    [Theory]
    [InlineData(MongoFault.GarbageOnHello, "protocol")]
    [InlineData(MongoFault.GarbageOnFind, "protocol")]
    [InlineData(MongoFault.CorruptBsonOnFind, "protocol")]
    [InlineData(MongoFault.ErrorOnFind, "server_error")]
    public async Task A_malformed_or_refused_answer_is_counted_by_reason_the_last_value_stays_and_reading_recovers(MongoFault fault, string reason)
    {
        await using var server = new ScriptedMongoServer();
        server.SetFilter(Prod);
        var source = Source(server.ConnectionString, timeoutSeconds: 2);
        Assert.True(await source.RefreshAsync(CancellationToken.None), Log);

        server.Fault = fault;
        Assert.False(await source.RefreshAsync(CancellationToken.None), Log);
        Assert.False(await source.RefreshAsync(CancellationToken.None));
        Assert.Equal(2, Failures(reason));
        Assert.Equal(2, AllFailures);
        AssertMap(Prod, source.HeaderValueFilter);
        var warning = SingleWarning();
        Assert.Contains($"({reason}: ", warning);

        server.Fault = MongoFault.None;
        server.SetFilter(Staging);
        Assert.True(await source.RefreshAsync(CancellationToken.None), Log);
        AssertMap(Staging, source.HeaderValueFilter);
    }

    public static IEnumerable<object[]> WrongTypes() =>
    [
        [new BsonWriter().String("filterHeaderValueMap", "x-env=prod"), "filterHeaderValueMap is a BSON String, not a document"],
        [new BsonWriter().Raw(0x04, "filterHeaderValueMap", new BsonWriter().String("0", "x-env").ToBytes()), "filterHeaderValueMap is a BSON Array"],
        [new BsonWriter().Document("filterHeaderValueMap", new BsonWriter().String("x-env", "prod").Int32("x-shard", 5)), "filterHeaderValueMap.x-shard is a BSON Int32, not a string"],
        [new BsonWriter().Document("filterHeaderValueMap", new BsonWriter().Document("x-env", new BsonWriter().String("eq", "prod"))), "filterHeaderValueMap.x-env is a BSON Document"],
        [new BsonWriter().Document("filterHeaderValueMap", new BsonWriter().String("x-env", "prod").String("X-ENV", "staging")), "lists the header 'X-ENV' twice"],
    ];

    [Theory]
    [MemberData(nameof(WrongTypes))]
    public async Task Wrong_bson_types_are_refused_counted_and_the_last_value_stays(BsonWriter document, string problem)
    {
        await using var server = new ScriptedMongoServer();
        server.SetFilter(Prod);
        var source = Source(server.ConnectionString);
        Assert.True(await source.RefreshAsync(CancellationToken.None), Log);
        server.SetSettingsDocument(document);
        Assert.False(await source.RefreshAsync(CancellationToken.None));
        Assert.Equal(1, Failures("bad_document"));
        AssertMap(Prod, source.HeaderValueFilter);
        Assert.Contains(problem, SingleWarning());
    }

    [Fact]
    public async Task A_refused_login_is_counted_and_neither_the_password_nor_the_connection_string_is_logged()
    {
        await using var server = new ScriptedMongoServer();
        server.SetFilter(Prod);
        var password = "pw-" + Guid.NewGuid().ToString("N")[..12] + "@:/?";
        var connectionString = $"mongodb://collector:{Uri.EscapeDataString(password)}@127.0.0.1:{server.Port}/admini?authSource=admin";
        var source = Source(connectionString, Staging);
        Assert.DoesNotContain(password, source.Description);
        Assert.False(await source.RefreshAsync(CancellationToken.None));
        Assert.False(await source.RefreshAsync(CancellationToken.None));
        Assert.Equal(2, Failures("auth"));
        AssertMap(Staging, source.HeaderValueFilter);
        Assert.Contains(server.Commands, c => c.Command == "saslStart");
        var everything = Log + "\n" + source.Description;
        SingleWarning();
        foreach (var secret in new[] { password, Uri.EscapeDataString(password), connectionString, "collector:" })
            Assert.DoesNotContain(secret, everything);
    }

    [Fact]
    public void Sanitize_removes_the_string_its_credentials_and_the_password_in_both_spellings()
    {
        const string conn = "mongodb://akto:p%40ss%3Aw0rd@mongo-0.akto.svc:27017,mongo-1.akto.svc:27017/admini?replicaSet=rs0";
        var text = $"bad: {conn}; user info akto:p%40ss%3Aw0rd; decoded akto:p@ss:w0rd; alone p@ss:w0rd and p%40ss%3Aw0rd;\nnext line";
        var clean = MongoSettingsSource.Sanitize(text, conn);
        Assert.DoesNotContain("p@ss:w0rd", clean);
        Assert.DoesNotContain("p%40ss%3Aw0rd", clean);
        Assert.DoesNotContain("\n", clean);
        Assert.Equal("bad: ***; user info ***; decoded ***; alone *** and ***; next line", clean);
    }

    [Fact]
    public void A_connection_string_the_driver_refuses_stops_start_up_without_echoing_its_password()
    {
        foreach (var bad in new[] { "mongodb://akto:hunter2secret@mongo:notaport/admini", "postgres://akto:hunter2secret@mongo/admini", "mongodb://" })
        {
            var e = Assert.Throws<SettingsException>(() => SettingsReader.Read(new Dictionary<string, string?> { ["AKTO_MONGO_CONN"] = bad }));
            Assert.Equal("AKTO_MONGO_CONN", e.Variable);
            Assert.DoesNotContain("hunter2secret", e.Message);
            Assert.DoesNotContain("\n", e.Message);
        }
        var s = SettingsReader.Read(new Dictionary<string, string?>
        {
            ["AKTO_MONGO_CONN"] = "mongodb://akto:hunter2secret@mongo.akto.svc:27017/admini",
            ["AKTO_MONGO_REFRESH_SECS"] = "30",
            ["AKTO_MONGO_TIMEOUT_SECS"] = "2.5",
        });
        Assert.Equal(TimeSpan.FromSeconds(30), s.MongoRefreshInterval);
        Assert.Equal(TimeSpan.FromSeconds(2.5), s.MongoTimeout);
        Assert.DoesNotContain("hunter2secret", s.ToString());
        Assert.Equal(TimeSpan.FromSeconds(120), new Settings().MongoRefreshInterval);
        Assert.Equal(TimeSpan.FromSeconds(10), new Settings().MongoTimeout);
    }

    private static HttpExchange Exchange(params (string Name, string Value)[] headers)
    {
        var request = new HttpMessage { IsRequest = true, Method = "GET", Target = "/items", Version = "HTTP/1.1" };
        request.Headers.Add(new("Host", "api.example.com"));
        foreach (var (name, value) in headers) request.Headers.Add(new(name, value));
        var info = new ConnectionInfo(IPAddress.Parse("10.0.0.9"), 8080, IPAddress.Parse("10.0.0.7"), 51334, ConnectionOrigin.Accept, "server");
        return new HttpExchange
        {
            Connection = new ConnectionId(4121, 17, 0), Info = info, Direction = 1, Source = EventSource.Syscall,
            Request = request, Response = new HttpMessage { StatusCode = 200, Reason = "OK", Version = "HTTP/1.1" },
        };
    }

    [Fact]
    public async Task The_exchange_filter_applies_the_environment_value_then_mongos_then_keeps_it_while_mongo_is_down()
    {
        var server = new ScriptedMongoServer();
        server.SetFilter(Prod);
        var source = Source(server.ConnectionString, Staging, timeoutSeconds: 1);
        var filter = new ExchangeFilter(new Settings(), [], source);
        using var prod = Exchange(("X-Env", "prod"));
        using var team = Exchange(("x-team", "payments"));
        using var staging = Exchange(("x-env", "staging"));

        Assert.Equal("header_value_filter", filter.DropReason(prod));
        Assert.Null(filter.DropReason(staging));

        Assert.True(await source.RefreshAsync(CancellationToken.None), Log);
        Assert.Null(filter.DropReason(prod));
        Assert.Null(filter.DropReason(team));
        Assert.Equal("header_value_filter", filter.DropReason(staging));

        await server.DisposeAsync();
        Assert.False(await source.RefreshAsync(CancellationToken.None));
        Assert.Null(filter.DropReason(prod));
        Assert.Equal("header_value_filter", filter.DropReason(staging));
    }
}
