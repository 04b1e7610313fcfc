using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Collector.Tests.Support;

/// <summary>What the scripted server does wrong, on purpose.</summary>
public enum MongoFault
{
    None,
    /// <summary>Answers the handshake (hello/isMaster) with bytes that are not a wire message.</summary>
    GarbageOnHello,
    /// <summary>Accepts connections and never answers the handshake.</summary>
    SilentOnHello,
    /// <summary>Answers find with bytes that are not a wire message.</summary>
    GarbageOnFind,
    /// <summary>Answers find with a well-framed OP_MSG whose BSON is broken (an element type no BSON has).</summary>
    CorruptBsonOnFind,
    /// <summary>Answers find only after <see cref="ScriptedMongoServer.FindDelay"/>.</summary>
    SlowFind,
    /// <summary>Answers find with ok: 0 (Unauthorized).</summary>
    ErrorOnFind,
}

/// <summary>A MongoDB server on the wire, scripted: TCP on loopback, MongoDB's wire protocol as a
/// mongod 7.0 speaks it to a driver (OP_MSG; OP_QUERY/OP_REPLY for a legacy isMaster handshake),
/// with the commands the collector's settings source needs: hello/isMaster, find on
/// accounts_settings, getMore, killCursors, endSessions, saslStart; anything else gets
/// CommandNotFound, as from a real server. BSON is encoded by <see cref="BsonWriter"/>, not by the
/// driver's library. No real mongod can be installed on the build machines; this stands in for one
/// (the driver's monitoring, pooling, sessions, retries and timeouts all run for real against it).</summary>
public sealed class ScriptedMongoServer : IAsyncDisposable
{
    private const int OpReply = 1, OpQuery = 2004, OpMsg = 2013;

    private readonly TcpListener _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentDictionary<TcpClient, byte> _clients = new();
    private readonly Task _acceptLoop;
    private int _requestIds;
    private int _connectionIds;
    private volatile byte[]? _settingsDocument;

    public int Port { get; }

    /// <summary>A connection string as Akto's manifests write it (the path names the auth database,
    /// not the one read).</summary>
    public string ConnectionString => $"mongodb://127.0.0.1:{Port}/admini";

    public volatile MongoFault Fault;
    public TimeSpan FindDelay { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Every command received, by name, with its database.</summary>
    public ConcurrentQueue<(string Command, string Database, BsonRead Body)> Commands { get; } = new();

    /// <summary>Requests this server could not read (a gap in the script, not a driver fault).</summary>
    public ConcurrentQueue<string> Errors { get; } = new();

    private int _finds;
    public int Finds => Volatile.Read(ref _finds);

    private readonly SemaphoreSlim _findSignal = new(0);

    public ScriptedMongoServer(int port = 0)
    {
        _listener = new TcpListener(IPAddress.Loopback, port);
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _acceptLoop = Task.Run(AcceptLoop);
    }

    /// <summary>The accounts_settings document that find returns (null: the collection is empty).</summary>
    public void SetSettingsDocument(BsonWriter? doc) => _settingsDocument = doc?.ToBytes();

    /// <summary>An accounts_settings document as Akto's dashboard writes it, with this filterHeaderValueMap.</summary>
    public void SetFilter(IReadOnlyDictionary<string, string>? filter)
    {
        var doc = new BsonWriter().Int32("_id", 1_000_000).Bool("redactPayload", false).String("setupType", "PROD");
        if (filter is not null)
        {
            var map = new BsonWriter();
            foreach (var (k, v) in filter) map.String(k, v);
            doc.Document("filterHeaderValueMap", map);
        }
        SetSettingsDocument(doc);
    }

    /// <summary>Waits until at least count find commands have arrived (before their answer is sent).</summary>
    public async Task WaitForFindsAsync(int count, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (Finds < count)
        {
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero) throw new TimeoutException($"{Finds} find commands arrived, waited for {count}");
            await _findSignal.WaitAsync(left < TimeSpan.FromMilliseconds(200) ? left : TimeSpan.FromMilliseconds(200));
        }
    }

    private async Task AcceptLoop()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            _clients[client] = 0;
            _ = Task.Run(() => Serve(client));
        }
    }

    private async Task Serve(TcpClient client)
    {
        var connectionId = Interlocked.Increment(ref _connectionIds);
        try
        {
            var stream = client.GetStream();
            var header = new byte[16];
            while (!_stop.IsCancellationRequested)
            {
                await stream.ReadExactlyAsync(header, _stop.Token);
                var length = BinaryPrimitives.ReadInt32LittleEndian(header);
                var requestId = BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(4));
                var opCode = BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(12));
                if (length < 16 || length > 48_000_000) throw new InvalidDataException($"message length {length}");
                var body = new byte[length - 16];
                await stream.ReadExactlyAsync(body, _stop.Token);
                var (command, database, doc) = opCode switch
                {
                    OpMsg => ReadOpMsg(body),
                    OpQuery => ReadOpQuery(body),
                    _ => throw new InvalidDataException($"opcode {opCode} is not spoken here"),
                };
                Commands.Enqueue((command, database, doc));
                var reply = await Answer(command, database, doc, connectionId, stream);
                if (reply is null) continue; // held or already written
                await stream.WriteAsync(opCode == OpQuery ? OpReplyMessage(requestId, reply) : OpMsgMessage(requestId, reply), _stop.Token);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or EndOfStreamException or IOException or ObjectDisposedException)
        {
            // the driver or the test closed the connection: that is how a connection ends here
        }
        catch (Exception e) when (e is InvalidDataException or FormatException)
        {
            // the driver said something this server does not understand: a test can see it
            Errors.Enqueue(e.Message);
        }
        finally
        {
            _clients.TryRemove(client, out _);
            client.Dispose();
        }
    }

    /// <summary>The reply document, or null when the fault wrote something else or holds the answer.</summary>
    private async Task<byte[]?> Answer(string command, string database, BsonRead doc, int connectionId, NetworkStream stream)
    {
        var fault = Fault;
        switch (command.ToLowerInvariant())
        {
            case "hello":
            case "ismaster":
                if (fault == MongoFault.GarbageOnHello)
                {
                    await stream.WriteAsync(Garbage, _stop.Token);
                    return null;
                }
                if (fault == MongoFault.SilentOnHello)
                {
                    await Task.Delay(Timeout.Infinite, _stop.Token);
                    return null;
                }
                return Hello(command == "hello", connectionId, doc);
            case "find":
                Interlocked.Increment(ref _finds);
                _findSignal.Release();
                switch (fault)
                {
                    case MongoFault.GarbageOnFind:
                        await stream.WriteAsync(Garbage, _stop.Token);
                        return null;
                    case MongoFault.CorruptBsonOnFind:
                        // a well-framed message whose document has an element of type 0x42
                        return new BsonWriter().Raw(0x42, "cursor", [1, 2, 3, 4]).Double("ok", 1).ToBytes();
                    case MongoFault.SlowFind:
                        await Task.Delay(FindDelay, _stop.Token);
                        break;
                    case MongoFault.ErrorOnFind:
                        return Error(13, "Unauthorized", $"not authorized on {database} to execute command {{ find: \"{doc["find"]}\" }}");
                }
                IReadOnlyList<byte[]> batch = _settingsDocument is { } d ? [d] : [];
                return new BsonWriter()
                    .Raw(0x03, "cursor", new BsonWriter()
                        .Raw(0x04, "firstBatch", ArrayOf(batch))
                        .Int64("id", 0)
                        .String("ns", $"{database}.{doc["find"]}")
                        .ToBytes())
                    .Double("ok", 1).ToBytes();
            case "getmore":
                return Error(43, "CursorNotFound", "cursor id not found");
            case "killcursors":
                return new BsonWriter().StringArray("cursorsKilled").StringArray("cursorsNotFound").StringArray("cursorsAlive").StringArray("cursorsUnknown").Double("ok", 1).ToBytes();
            case "endsessions":
            case "ping":
                return new BsonWriter().Double("ok", 1).ToBytes();
            case "saslstart":
            case "saslcontinue":
                // no user exists here: every login is refused, as by a server that does not know it
                return Error(18, "AuthenticationFailed", "Authentication failed.");
            default:
                return Error(59, "CommandNotFound", $"no such command: '{command}'");
        }
    }

    /// <summary>Not a wire message: its first four bytes, read as a length, are far beyond any limit.</summary>
    private static readonly byte[] Garbage = Encoding.ASCII.GetBytes("this is not a MongoDB reply, it is garbage\r\n\r\n");

    private static byte[] ArrayOf(IReadOnlyList<byte[]> docs)
    {
        using var ms = new MemoryStream();
        ms.Write(new byte[4]);
        for (var i = 0; i < docs.Count; i++)
        {
            ms.WriteByte(0x03);
            ms.Write(Encoding.ASCII.GetBytes(i.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            ms.WriteByte(0);
            ms.Write(docs[i]);
        }
        ms.WriteByte(0);
        var bytes = ms.ToArray();
        BinaryPrimitives.WriteInt32LittleEndian(bytes, bytes.Length);
        return bytes;
    }

    private byte[] Hello(bool modern, int connectionId, BsonRead request)
    {
        var w = new BsonWriter();
        if (modern) w.Bool("isWritablePrimary", true);
        else w.Bool("ismaster", true);
        w.Bool("helloOk", true)
            .Int32("maxBsonObjectSize", 16 * 1024 * 1024)
            .Int32("maxMessageSizeBytes", 48_000_000)
            .Int32("maxWriteBatchSize", 100_000)
            .DateTime("localTime", DateTimeOffset.UtcNow)
            .Int32("logicalSessionTimeoutMinutes", 30)
            .Int32("connectionId", connectionId)
            .Int32("minWireVersion", 0)
            .Int32("maxWireVersion", 21)
            .Bool("readOnly", false);
        // a user named in the handshake: offer SCRAM, as a server with that user would
        if (request["saslSupportedMechs"] is string)
            w.StringArray("saslSupportedMechs", "SCRAM-SHA-256", "SCRAM-SHA-1");
        return w.Double("ok", 1).ToBytes();
    }

    private static byte[] Error(int code, string codeName, string message) =>
        new BsonWriter().Double("ok", 0).String("errmsg", message).Int32("code", code).String("codeName", codeName).ToBytes();

    private static (string Command, string Database, BsonRead Doc) ReadOpMsg(byte[] body)
    {
        var flags = BinaryPrimitives.ReadUInt32LittleEndian(body);
        var end = (flags & 1) != 0 ? body.Length - 4 : body.Length; // checksumPresent
        var i = 4;
        BsonRead? doc = null;
        while (i < end)
        {
            var kind = body[i++];
            if (kind == 0)
            {
                var (d, n) = BsonRead.Parse(body.AsSpan(i, end - i));
                doc = d;
                i += n;
            }
            else if (kind == 1)
            {
                i += BinaryPrimitives.ReadInt32LittleEndian(body.AsSpan(i)); // a document sequence: not needed here
            }
            else throw new InvalidDataException($"OP_MSG section kind {kind}");
        }
        if (doc is null) throw new InvalidDataException("OP_MSG without a body section");
        return (doc.FirstName, doc["$db"] as string ?? "", doc);
    }

    private static (string Command, string Database, BsonRead Doc) ReadOpQuery(byte[] body)
    {
        var i = 4; // flags
        var nameEnd = Array.IndexOf(body, (byte)0, i);
        var collection = Encoding.UTF8.GetString(body, i, nameEnd - i); // "admin.$cmd"
        i = nameEnd + 1 + 8; // numberToSkip, numberToReturn
        var (doc, _) = BsonRead.Parse(body.AsSpan(i));
        // a legacy command may come wrapped as {$query: {...}, $readPreference: ...}
        if (doc.FirstName == "$query" && doc["$query"] is BsonRead inner) doc = inner;
        return (doc.FirstName, collection.Split('.')[0], doc);
    }

    private byte[] OpMsgMessage(int responseTo, byte[] doc)
    {
        var m = new byte[16 + 4 + 1 + doc.Length];
        Header(m, responseTo, OpMsg);
        m[20] = 0; // section kind 0: the body
        doc.CopyTo(m, 21);
        return m;
    }

    private byte[] OpReplyMessage(int responseTo, byte[] doc)
    {
        var m = new byte[16 + 4 + 8 + 4 + 4 + doc.Length];
        Header(m, responseTo, OpReply);
        BinaryPrimitives.WriteInt32LittleEndian(m.AsSpan(32), 1); // numberReturned
        doc.CopyTo(m, 36);
        return m;
    }

    private void Header(byte[] m, int responseTo, int opCode)
    {
        BinaryPrimitives.WriteInt32LittleEndian(m, m.Length);
        BinaryPrimitives.WriteInt32LittleEndian(m.AsSpan(4), Interlocked.Increment(ref _requestIds));
        BinaryPrimitives.WriteInt32LittleEndian(m.AsSpan(8), responseTo);
        BinaryPrimitives.WriteInt32LittleEndian(m.AsSpan(12), opCode);
    }

    /// <summary>The server goes away: the listener closes and every open connection is cut.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_stop.IsCancellationRequested) return;
        _stop.Cancel();
        _listener.Stop();
        foreach (var c in _clients.Keys) c.Dispose();
        await _acceptLoop;
    }
}
