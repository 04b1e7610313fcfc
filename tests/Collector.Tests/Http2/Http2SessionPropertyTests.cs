using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Collector.Events;
using Collector.Tests.Http;
using Collector.Tests.Support;

namespace Collector.Tests.Http2;

/// <summary>One stream of a generated conversation, as the peers saw it (H2Conversations.py).</summary>
public sealed class H2Exchange
{
    public uint Stream { get; set; }
    public bool Pushed { get; set; }
    public bool Reset { get; set; }
    /// <summary>The response had ended when the stream was reset (always, for one not reset).</summary>
    public bool ResponseComplete { get; set; }
    public string Method { get; set; } = "";
    public string Path { get; set; } = "";
    public string? Authority { get; set; }
    public string Scheme { get; set; } = "";
    public string[][] RequestHeaders { get; set; } = [];
    public string[][] RequestTrailers { get; set; } = [];
    public byte[] RequestBody { get; set; } = [];
    public int Status { get; set; }
    public string[][] ResponseHeaders { get; set; } = [];
    public string[][] ResponseTrailers { get; set; } = [];
    public byte[] ResponseBody { get; set; } = [];
    public int[] Informational { get; set; } = [];

    /// <summary>The contract: no pseudo-headers; a host header made from :authority comes first
    /// when the request has none; trailers follow the headers.</summary>
    public (string, string)[] ExpectedRequestHeaders
    {
        get
        {
            var fields = RequestHeaders.Select(h => (h[0], h[1])).ToList();
            if (Authority is not null && !fields.Any(f => f.Item1 == "host")) fields.Insert(0, ("host", Authority));
            return [.. fields, .. RequestTrailers.Select(h => (h[0], h[1]))];
        }
    }

    public (string, string)[] ExpectedResponseHeaders =>
        [.. ResponseHeaders.Select(h => (h[0], h[1])), .. ResponseTrailers.Select(h => (h[0], h[1]))];

    /// <summary>The contract for RST_STREAM: a stream reset before its response ended is not emitted
    /// (counted as h2_stream_reset); one reset after (RFC 9113 §8.1: a server may answer before the
    /// request has ended, then reset it) is emitted, its request marked incomplete.</summary>
    public bool Emitted => !Reset || ResponseComplete;
    public bool RequestIncomplete => Reset && ResponseComplete;

    public override string ToString() =>
        $"stream {Stream}{(Pushed ? " pushed" : "")}{(Reset ? ResponseComplete ? " reset after its response" : " reset" : "")}: {Method} {Path} ({RequestBody.Length} bytes) → {Status} ({ResponseBody.Length} bytes)";
}

/// <summary>A header block of one direction (see header_blocks in the generator).</summary>
public sealed class H2Block
{
    public int Frame { get; set; }
    public int Last { get; set; }
    public uint Stream { get; set; }
    public uint Promised { get; set; }
    public int[][] Ops { get; set; } = [];
}

public sealed class H2Conversation
{
    public long Seed { get; set; }
    public byte[][] CChunks { get; set; } = [];
    public byte[][] SChunks { get; set; } = [];
    public string Order { get; set; } = "";
    public bool FrameSizeChanged { get; set; }
    public H2Exchange[] Exchanges { get; set; } = [];
    public H2Block[]? CBlocks { get; set; }
    public H2Block[]? SBlocks { get; set; }

    /// <summary>The writes in the order they were made (client = the request direction).</summary>
    public List<(bool Client, byte[] Bytes)> Steps()
    {
        int c = 0, s = 0;
        return Order.Select(d => d == 'c' ? (true, CChunks[c++]) : (false, SChunks[s++])).ToList();
    }
}

public sealed class H2Generated
{
    public long Seed { get; set; }
    public H2Conversation[] Conversations { get; set; } = [];
}

/// <summary>Runs H2Conversations.py (python3-h2 on both ends, in memory) and reads what it made.</summary>
public static class H2Generator
{
    public static string Script => Path.Combine(Repo.Root, "tests", "Collector.Tests", "Http2", "H2Conversations.py");

    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public static H2Generated Run(long seed, int count, IDictionary<string, object>? parameters = null)
    {
        var p = new Dictionary<string, object>(parameters ?? new Dictionary<string, object>()) { ["seed"] = seed, ["count"] = count };
        var psi = new ProcessStartInfo("/usr/bin/python3")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(Script);
        psi.ArgumentList.Add(JsonSerializer.Serialize(p));
        using var proc = Process.Start(psi)!;
        var err = proc.StandardError.ReadToEndAsync();
        H2Generated? g = null;
        Exception? parse = null;
        try
        {
            g = JsonSerializer.Deserialize<H2Generated>(proc.StandardOutput.BaseStream, Json);
        }
        catch (JsonException e)
        {
            parse = e;
        }
        if (!proc.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            proc.Kill(entireProcessTree: true);
            throw new TimeoutException("H2Conversations.py did not finish");
        }
        proc.WaitForExit();
        if (proc.ExitCode != 0 || g is null)
            throw new InvalidOperationException($"H2Conversations.py {JsonSerializer.Serialize(p)} exited {proc.ExitCode}: {err.Result}", parse);
        return g;
    }
}

/// <summary>Shared by the HTTP/2 tests: replay, metrics, comparison.</summary>
public static class H2Test
{
    /// <summary>A run seed: H2_SEED when set (to replay a failure), else a fresh one.</summary>
    public static long RandomSeed() =>
        long.TryParse(Environment.GetEnvironmentVariable("H2_SEED"), out var s) ? s : Random.Shared.Next(1, int.MaxValue);

    /// <summary>Runs the checks and, when one fails, says which seed replays it.</summary>
    public static void Reproducibly(long seed, Action run)
    {
        try
        {
            run();
        }
        catch (Exception e)
        {
            throw new Xunit.Sdk.XunitException($"generator seed {seed} (again: H2_SEED={seed}): {e.Message}", e);
        }
    }

    /// <summary>The sum of a metric's series as /metrics shows it (for the counters the HTTP/2
    /// session adds, whatever their property is called).</summary>
    public static double Metric(Harness h, string name)
    {
        double sum = 0;
        foreach (var line in h.Metrics.Render().Split('\n'))
        {
            if (!line.StartsWith(name, StringComparison.Ordinal) || line.Length <= name.Length || line[name.Length] is not (' ' or '{')) continue;
            sum += double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
        }
        return sum;
    }

    /// <summary>What says that something was lost: every drop (collector_http_dropped_total), the
    /// streams that could not be named, the fields left out.</summary>
    public static double Counted(Harness h) =>
        h.TotalDrops + Metric(h, "collector_http2_streams_unnamed_total") + Metric(h, "collector_http2_unknown_fields_total");

    public static string MetricSummary(Harness h) =>
        $"drops: {h.DropSummary}; " + string.Join(", ", h.Metrics.Render().Split('\n').Where(l => l.StartsWith("collector_http2_", StringComparison.Ordinal)));

    /// <summary>Event sizes for one conversation: all small, all mixed, or whole writes.</summary>
    public static Func<int> CutSizes(Random r)
    {
        switch (r.Next(4))
        {
            case 0: return () => r.Next(1, 17);
            case 1: return () => (int)Math.Exp(r.NextDouble() * Math.Log(65536)) is var n && n > 0 ? n : 1;
            case 2: return () => r.Next(1, 1501);
            default: return () => int.MaxValue;
        }
    }

    /// <summary>The writes as kernel events: adjacent writes of one side sometimes merged, each cut at
    /// random sizes, in their order (which keeps causality: an answer never before its cause).</summary>
    public static Queue<(bool Client, byte[] Bytes)> Events(List<(bool Client, byte[] Bytes)> steps, Random r)
    {
        var merged = new List<(bool Client, byte[] Bytes)>();
        foreach (var s in steps)
        {
            if (merged.Count > 0 && merged[^1].Client == s.Client && r.Next(2) == 0)
                merged[^1] = (s.Client, H2Frames.Concat(merged[^1].Bytes, s.Bytes));
            else
                merged.Add(s);
        }
        var size = CutSizes(r);
        var events = new Queue<(bool, byte[])>();
        foreach (var (client, bytes) in merged)
        {
            for (var at = 0; at < bytes.Length;)
            {
                var n = Math.Min(size(), bytes.Length - at);
                events.Enqueue((client, bytes.AsSpan(at, n).ToArray()));
                at += n;
            }
        }
        return events;
    }

    public static void Feed(Harness h, TestConn conn, bool client, byte[] bytes) =>
        h.Event(conn, client ? conn.RequestDirection : conn.ResponseDirection, bytes);

    /// <summary>The exchanges emitted on one connection.</summary>
    public static List<Captured> Of(Harness h, TestConn conn) =>
        h.Exchanges.Where(x => x.Connection.Fd == conn.Fd && x.Connection.Generation == conn.Generation).ToList();

    /// <summary>An emitted exchange is exactly the stream it names (by its unique path).</summary>
    public static void Match(H2Exchange w, Captured x, TestConn conn, string where)
    {
        where = $"{where} {w}";
        Assert.True(x.Version == "HTTP/2", $"{where}: version '{x.Version}'");
        Assert.True(x.Method == w.Method, $"{where}: method '{x.Method}'");
        Assert.True(x.Target == w.Path, $"{where}: target '{x.Target}'");
        Assert.True(x.Status == w.Status, $"{where}: status {x.Status}");
        Same(w.ExpectedRequestHeaders, x.RequestHeaders, $"{where}: request headers");
        Same(w.ExpectedResponseHeaders, x.ResponseHeaders, $"{where}: response headers (then trailers)");
        Assert.True(w.RequestBody.AsSpan().SequenceEqual(x.RequestBody), $"{where}: request body ({x.RequestBody.Length} bytes)");
        Assert.True(w.ResponseBody.AsSpan().SequenceEqual(x.ResponseBody), $"{where}: response body ({x.ResponseBody.Length} bytes)");
        Assert.True(x.RequestCut == w.RequestIncomplete, $"{where}: request {(x.RequestCut ? "" : "not ")}marked cut");
        Assert.False(x.ResponseCut, $"{where}: response marked cut");
        Assert.True(x.Direction == (conn.TracedIsServer ? 1 : 2), $"{where}: direction {x.Direction}");
        Assert.True(x.Akto("path") == w.Path, $"{where}: akto path '{x.Akto("path")}'");
    }

    /// <summary>What the conversation says of a path.</summary>
    public static string Describe(H2Conversation conv, string path) =>
        conv.Exchanges.FirstOrDefault(x => x.Path == path)?.ToString() ?? "no stream had it";

    /// <summary>For a connection joined mid-stream, a field that referenced an entry never seen is
    /// left out (and counted): what is there must be the stream's, in its order.</summary>
    public static void MatchPartly(H2Exchange w, Captured x, TestConn conn, string where)
    {
        where = $"{where} {w}";
        Assert.True(x.Version == "HTTP/2", $"{where}: version '{x.Version}'");
        Assert.True(x.Method == w.Method, $"{where}: method '{x.Method}'");
        Assert.True(x.Target == w.Path, $"{where}: target '{x.Target}'");
        Assert.True(x.Status == w.Status, $"{where}: status {x.Status}");
        // the host field itself may have been an entry never seen: the one made from :authority
        // then comes first
        var requestHeaders = x.RequestHeaders.ToList();
        if (requestHeaders.Count > 0 && requestHeaders[0].Key == "host" && w.ExpectedRequestHeaders.Contains(("host", requestHeaders[0].Value)) &&
            w.ExpectedRequestHeaders.Length > 0 && w.ExpectedRequestHeaders[0].Item1 != "host")
            requestHeaders.RemoveAt(0);
        Subsequence(w.ExpectedRequestHeaders, requestHeaders, $"{where}: request headers");
        Subsequence(w.ExpectedResponseHeaders, x.ResponseHeaders, $"{where}: response headers (then trailers)");
        Assert.True(w.RequestBody.AsSpan().SequenceEqual(x.RequestBody), $"{where}: request body ({x.RequestBody.Length} bytes)");
        Assert.True(w.ResponseBody.AsSpan().SequenceEqual(x.ResponseBody), $"{where}: response body ({x.ResponseBody.Length} bytes)");
        Assert.True(x.RequestCut == w.RequestIncomplete, $"{where}: request {(x.RequestCut ? "" : "not ")}marked cut");
        Assert.False(x.ResponseCut, $"{where}: response marked cut");
        Assert.True(x.Direction == (conn.TracedIsServer ? 1 : 2), $"{where}: direction {x.Direction}");
    }

    public static void Subsequence((string, string)[] want, IReadOnlyList<KeyValuePair<string, string>> got, string where)
    {
        var i = 0;
        foreach (var (k, v) in got)
        {
            while (i < want.Length && want[i] != (k, v)) i++;
            if (i == want.Length)
                Assert.Fail($"{where}: '{k}: {v}' is not the stream's (or out of order)\n want: {string.Join(" | ", want.Select(f => $"{f.Item1}: {f.Item2}"))}\n got:  {string.Join(" | ", got.Select(f => $"{f.Key}: {f.Value}"))}");
            i++;
        }
    }

    public static void Same((string, string)[] want, IReadOnlyList<KeyValuePair<string, string>> got, string where)
    {
        var g = got.Select(kv => (kv.Key, kv.Value)).ToArray();
        if (want.SequenceEqual(g)) return;
        var i = 0;
        while (i < Math.Min(want.Length, g.Length) && want[i] == g[i]) i++;
        Assert.Fail($"{where}: differ at field {i}\n want ({want.Length}): {string.Join(" | ", want.Select(f => $"{f.Item1}: {f.Item2}"))}\n got  ({g.Length}): {string.Join(" | ", g.Select(f => $"{f.Item1}: {f.Item2}"))}");
    }
}

/// <summary>Random HTTP/2 conversations between two real implementations (python3-h2), re-cut into
/// kernel events anywhere and interleaved across connections: every stream that completed comes
/// out exactly as sent (HPACK with a changing table, CONTINUATION, padding, trailers, push, flow
/// control noise), one reset before its response ended is counted, and nothing stays buffered.</summary>
public sealed class Http2SessionPropertyTests
{
    private const int FixedSeed = 20251128;

    [Fact]
    public void Generated_conversations_with_a_fixed_seed_come_out_exactly()
    {
        var g = H2Generator.Run(FixedSeed, 200);
        H2Test.Reproducibly(g.Seed, () => ReplayAll(g, FixedSeed));
    }

    [Fact]
    public void Generated_conversations_with_a_random_seed_come_out_exactly()
    {
        var seed = H2Test.RandomSeed();
        var g = H2Generator.Run(seed, 120);
        H2Test.Reproducibly(seed, () => ReplayAll(g, seed));
    }

    /// <summary>Replays the conversations four connections at a time through one table each.</summary>
    private static void ReplayAll(H2Generated g, long seed)
    {
        var r = new Random((int)(seed % int.MaxValue));
        for (var first = 0; first < g.Conversations.Length; first += 4)
        {
            var batch = g.Conversations.Skip(first).Take(4).Select((c, i) => (Index: first + i, Conv: c)).ToArray();
            using var h = new Harness();
            var conns = batch.Select(b => h.Open((uint)(10 + b.Index), tracedIsServer: b.Index % 2 == 0)).ToArray();
            var queues = batch.Select(b => H2Test.Events(b.Conv.Steps(), r)).ToArray();
            while (queues.Any(q => q.Count > 0))
            {
                var pick = r.Next(queues.Length);
                while (queues[pick].Count == 0) pick = (pick + 1) % queues.Length;
                var (client, bytes) = queues[pick].Dequeue();
                H2Test.Feed(h, conns[pick], client, bytes);
            }
            foreach (var c in conns) h.Close(c);

            for (var i = 0; i < batch.Length; i++)
            {
                var (index, conv) = batch[i];
                var where = $"conversation {index} (seed {conv.Seed}, traced {(conns[i].TracedIsServer ? "server" : "client")})";
                var got = H2Test.Of(h, conns[i]);
                var want = conv.Exchanges.Where(x => x.Emitted).ToDictionary(x => x.Path);
                foreach (var x in got)
                {
                    Assert.True(want.Remove(x.Target, out var w),
                        $"{where}: an exchange for '{x.Target}' that was not sent or came twice ({H2Test.Describe(conv, x.Target)})");
                    H2Test.Match(w!, x, conns[i], where);
                }
                Assert.True(want.Count == 0,
                    $"{where}: {want.Count} not emitted, e.g. {string.Join("; ", want.Values.Take(5))}; {H2Test.MetricSummary(h)}");
            }
            var resets = batch.Sum(b => b.Conv.Exchanges.Count(x => !x.Emitted));
            var at = $"conversations {first}-{first + batch.Length - 1}";
            Assert.True(h.Drops("h2_stream_reset") == resets, $"{at}: {resets} streams were reset; {H2Test.MetricSummary(h)}");
            Assert.True(h.TotalDrops == resets, $"{at}: drops other than the resets; {H2Test.MetricSummary(h)}");
            Assert.True(H2Test.Metric(h, "collector_http2_streams_unnamed_total") == 0, $"{at}: {H2Test.MetricSummary(h)}");
            Assert.Equal(0, h.Table.RetainedBytes);
            Assert.Equal(0, Interlocked.Read(ref h.Metrics.BufferedBytes));
        }
    }

    /// <summary>A connection that was open before the collector (ConnectionOrigin.Unknown), seen from
    /// a frame boundary after its first K frames: a stream whose header blocks were all seen and can
    /// be decoded from what was seen comes out exactly; nothing comes out wrong (another stream may
    /// come out without the fields that could not be decoded, but with its own method, path, status
    /// and bodies); a stream that had frames after the cut and does not come out is counted.
    ///
    /// "Can be decoded": every HPACK reference in its blocks is to the static table or to a dynamic
    /// entry inserted after the cut whose name is known, in a table assumed to hold 4096 bytes
    /// (SETTINGS_HEADER_TABLE_SIZE's default) until a size update after the cut says otherwise. A cut
    /// inside a header block (CONTINUATION first) leaves the dynamic table of that direction unknown.</summary>
    [Fact]
    public void A_connection_joined_at_any_frame_boundary_emits_what_it_can_decode_and_nothing_wrong()
    {
        var seed = H2Test.RandomSeed();
        // (a raised SETTINGS_MAX_FRAME_SIZE cannot be known by a reader that missed it)
        var g = H2Generator.Run(seed, 150, new Dictionary<string, object> { ["blocks"] = true, ["p_frame_size"] = 0.0 });
        H2Test.Reproducibly(seed, () =>
        {
            var r = new Random((int)(seed % int.MaxValue) ^ 0x5eed);
            var mustTotal = 0;
            var fd = 10u;
            foreach (var conv in g.Conversations)
            {
                for (var round = 0; round < 2; round++)
                {
                    var steps = conv.Steps();
                    var total = steps.Sum(s => H2Frames.ReadFrames(s.Bytes).Count());
                    if (total < 2) continue;
                    var k = r.Next(1, total);
                    var (kept, cCut, sCut) = SkipFrames(steps, k);
                    var events = H2Test.Events(kept, r);
                    var where = $"conversation seed {conv.Seed}, joined after frame {k} (client frame {cCut}, server frame {sCut}; " +
                                $"first event {(events.TryPeek(out var e0) ? $"{(e0.Client ? "client" : "server")} {e0.Bytes.Length} bytes" : "none")})";

                    using var h = new Harness();
                    var conn = h.Open(fd++, tracedIsServer: r.Next(2) == 0, origin: ConnectionOrigin.Unknown);
                    foreach (var (client, bytes) in events) H2Test.Feed(h, conn, client, bytes);
                    h.Close(conn);

                    var cOk = Decodable(conv.CBlocks!, cCut);
                    var sOk = Decodable(conv.SBlocks!, sCut);
                    var byPath = conv.Exchanges.Where(x => x.Emitted).ToDictionary(x => x.Path);
                    var got = H2Test.Of(h, conn);
                    foreach (var x in got)
                    {
                        Assert.True(byPath.Remove(x.Target, out var w),
                            $"{where}: an exchange for '{x.Target}' that was not sent or came twice ({H2Test.Describe(conv, x.Target)})");
                        // whole when every block could be decoded; else what is there is right
                        if (Seen(w!, conv, cOk, sOk, cCut, sCut)) H2Test.Match(w!, x, conn, where);
                        else H2Test.MatchPartly(w!, x, conn, where);
                    }
                    // byPath: what did not come out
                    var must = byPath.Values.Where(w => Seen(w, conv, cOk, sOk, cCut, sCut)).ToArray();
                    mustTotal += conv.Exchanges.Count(w => w.Emitted && Seen(w, conv, cOk, sOk, cCut, sCut));
                    Assert.True(must.Length == 0,
                        $"{where}: not emitted though all their header blocks were seen and decodable: {string.Join("; ", must.Take(5))}; {H2Test.MetricSummary(h)}");
                    var touched = Touched(kept);
                    var lost = byPath.Values.Where(w => touched.Contains(w.Stream)).ToArray();
                    Assert.True(H2Test.Metric(h, "collector_http2_streams_unnamed_total") + h.TotalDrops >= lost.Length,
                        $"{where}: {lost.Length} streams with frames after the cut went uncounted ({string.Join("; ", lost.Take(5))}); {H2Test.MetricSummary(h)}");
                    Assert.Equal(0, h.Table.RetainedBytes);
                }
            }
            Assert.True(mustTotal > 100, $"only {mustTotal} streams were decodable after a cut: the test tests little");
        });
    }

    /// <summary>The steps without their first k frames (the preface is not a frame); and how many
    /// frames of each direction were skipped.</summary>
    private static (List<(bool Client, byte[] Bytes)> Kept, int CCut, int SCut) SkipFrames(List<(bool Client, byte[] Bytes)> steps, int k)
    {
        var kept = new List<(bool, byte[])>();
        int c = 0, s = 0;
        foreach (var (client, bytes) in steps)
        {
            if (k == 0)
            {
                kept.Add((client, bytes));
                continue;
            }
            var frames = H2Frames.ReadFrames(bytes).ToList();
            var skip = Math.Min(k, frames.Count);
            k -= skip;
            if (client) c += skip;
            else s += skip;
            if (skip < frames.Count) kept.Add((client, bytes[frames[skip].Offset..]));
        }
        return (kept, c, s);
    }

    /// <summary>Streams with a HEADERS, CONTINUATION or DATA frame (or a PUSH_PROMISE for them) among
    /// the bytes fed.</summary>
    private static HashSet<uint> Touched(List<(bool Client, byte[] Bytes)> kept)
    {
        var streams = new HashSet<uint>();
        foreach (var (_, bytes) in kept)
        {
            foreach (var f in H2Frames.ReadFrames(bytes))
            {
                if (f.Type is H2Type.Data or H2Type.Headers or H2Type.Continuation) streams.Add(f.Stream);
                if (f.Type == H2Type.PushPromise)
                {
                    var at = f.Offset + 9 + (f.Has(H2Flags.Padded) ? 1 : 0);
                    streams.Add(System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(at)) & 0x7FFF_FFFF);
                }
            }
        }
        return streams;
    }

    /// <summary>Whether every header block of the stream was after the cut and decodable.</summary>
    private static bool Seen(H2Exchange w, H2Conversation conv, bool[] cOk, bool[] sOk, int cCut, int sCut)
    {
        var request = w.Pushed
            ? Blocks(conv.SBlocks!, sOk, b => b.Promised == w.Stream)
            : Blocks(conv.CBlocks!, cOk, b => b.Stream == w.Stream && b.Promised == 0);
        var response = Blocks(conv.SBlocks!, sOk, b => b.Stream == w.Stream && b.Promised == 0);
        return request.Count > 0 && response.Count > 0 && request.Concat(response).All(x => x.Ok);

        static List<(H2Block Block, bool Ok)> Blocks(H2Block[] blocks, bool[] ok, Func<H2Block, bool> which) =>
            blocks.Select((b, i) => (b, ok[i])).Where(t => which(t.b)).ToList();
    }

    /// <summary>Per block of a direction: seen (at or after the cut) and decodable by a reader
    /// whose dynamic table begins empty at the cut. An unknown entry stays in the table as a
    /// placeholder (its size is known from the encoder's side), so later indices still line up.</summary>
    private static bool[] Decodable(H2Block[] blocks, int cut)
    {
        var ok = new bool[blocks.Length];
        var poisoned = blocks.Any(b => b.Frame < cut && b.Last >= cut);
        var table = new List<(bool Known, int Size)>(); // newest first
        long max = 4096, size = 0;
        for (var i = 0; i < blocks.Length; i++)
        {
            var b = blocks[i];
            if (b.Frame < cut) continue;
            var good = true;
            foreach (var op in b.Ops)
            {
                var (kind, index, insert) = (op[0], op[1], op[2]);
                switch (kind)
                {
                    case 0:
                        good &= Resolves(index);
                        break;
                    case 1:
                    {
                        var known = Resolves(index);
                        good &= known;
                        if (insert > 0) Insert(known, insert);
                        break;
                    }
                    case 2:
                        if (insert > 0) Insert(true, insert);
                        break;
                    case 3:
                        max = index;
                        Evict();
                        break;
                }
            }
            ok[i] = good;
        }
        return ok;

        bool Resolves(int index) => index is >= 1 and <= 61 || (!poisoned && index >= 62 && index - 62 < table.Count && table[index - 62].Known);

        void Insert(bool known, int entry)
        {
            if (entry > max)
            {
                table.Clear();
                size = 0;
                return;
            }
            table.Insert(0, (known, entry));
            size += entry;
            Evict();
        }

        void Evict()
        {
            while (size > max)
            {
                size -= table[^1].Size;
                table.RemoveAt(table.Count - 1);
            }
        }
    }
}
