using System.Security.Cryptography;
using System.Text.Json;

namespace Collector.Fuzz;

/// <summary>http1 seeds from the capture corpus (tests/Collector.Tests/Corpus/*.json: the kernel
/// events the collector read while real programs talked, payloads in base64): each traced
/// connection with bytes becomes one script (ScriptTarget's format) in slot 0, its events cut as
/// the kernel cut them, its position jumps as gaps, TLS plaintext marked, closed if it was.
/// Scripts stop growing past MaxSeedBytes (afl works best with small seeds).</summary>
public static class CaptureSeeds
{
    private const int MaxSeedBytes = 12 * 1024;

    public static int Write(string outDir, string[] captures)
    {
        Directory.CreateDirectory(outDir);
        var written = 0;
        foreach (var path in captures)
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            var name = Path.GetFileNameWithoutExtension(path);
            var conns = new Dictionary<(long, long, long), Conn>();
            var order = new List<Conn>();
            foreach (var e in doc.RootElement.GetProperty("events").EnumerateArray())
            {
                var type = e.GetProperty("type").GetString();
                if (type is not ("open" or "data" or "close")) continue;
                var key = (e.GetProperty("tgid").GetInt64(), e.GetProperty("fd").GetInt64(), e.GetProperty("gen").GetInt64());
                if (!conns.TryGetValue(key, out var c))
                {
                    conns[key] = c = new Conn();
                    order.Add(c);
                }
                switch (type)
                {
                    case "open":
                        c.TracedIsServer = e.GetProperty("origin").GetString() != "connect";
                        c.Unknown = e.GetProperty("origin").GetString() == "unknown";
                        break;
                    case "close":
                        c.Closed = true;
                        break;
                    default:
                        c.Events.Add((e.GetProperty("dir").GetString() == "egress", e.GetProperty("src").GetString() != "syscall",
                            (ulong)e.GetProperty("pos").GetInt64(), Convert.FromBase64String(e.GetProperty("data").GetString()!)));
                        break;
                }
            }
            var seen = new HashSet<string>();
            var i = 0;
            foreach (var c in order)
            {
                if (c.Events.Count == 0) continue;
                var script = c.Script();
                if (!seen.Add(Convert.ToHexString(SHA256.HashData(script)))) continue;
                File.WriteAllBytes(Path.Combine(outDir, $"capture-{name}-{i++}"), script);
                written++;
            }
        }
        Console.WriteLine($"{written} seeds from {captures.Length} captures in {outDir}");
        return 0;
    }

    private sealed class Conn
    {
        public bool TracedIsServer = true, Unknown, Closed;
        public readonly List<(bool Egress, bool Tls, ulong Pos, byte[] Data)> Events = new();

        public byte[] Script()
        {
            var s = new MemoryStream();
            s.WriteByte((byte)((6 << 3) | (Unknown ? 0x40 : 0) | (TracedIsServer ? 0 : 0x80))); // open, slot 0
            var next = new Dictionary<(bool, bool), ulong>();
            foreach (var (egress, tls, pos, data) in Events)
            {
                if (s.Length + data.Length > MaxSeedBytes) break;
                // the client's bytes leave a traced client and arrive at a traced server
                var side = egress == TracedIsServer ? 1 : 0;
                var at = next.GetValueOrDefault((egress, tls));
                if (pos > at)
                {
                    var gap = pos - at;
                    var big = gap >= 65536;
                    var n = big ? (gap + 4095) / 4096 : gap;
                    s.WriteByte((byte)((4 << 3) | side | (big ? 0x40 : 0) | (tls ? 0x80 : 0)));
                    s.WriteByte((byte)n);
                    s.WriteByte((byte)(n >> 8));
                }
                next[(egress, tls)] = pos + (ulong)data.Length;
                s.WriteByte((byte)(side | (tls ? 0x40 : 0))); // data, kind 0
                s.WriteByte((byte)data.Length);
                s.WriteByte((byte)(data.Length >> 8));
                s.Write(data);
            }
            if (Closed) s.WriteByte(5 << 3);
            return s.ToArray();
        }
    }
}
