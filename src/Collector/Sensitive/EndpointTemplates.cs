using System.Runtime.InteropServices;
using System.Text;
using Collector.Http;

namespace Collector.Sensitive;

/// <summary>The endpoint label of the sensitive-data series: host (without port) and path, with
/// the segments that name one object among many folded (all digits → INTEGER, a UUID → UUID, as
/// Akto's templates spell them), so that /users/1 and /users/2 are one series. Templates are
/// remembered by host and path in a table of slots: an exchange of a target seen before makes no
/// string, and its series is found by the same string object.</summary>
public sealed class EndpointTemplates
{
    private const int MaxRemembered = 4096;
    // the last template of each (host, path) that lands in a slot: found by a hash of the ends of
    // both, then compared
    private readonly (string? Host, byte[] Path, string Template)[] _slots = new (string?, byte[], string)[MaxRemembered];
    private readonly bool[] _secondNewer = new bool[MaxRemembered / 2];
    // one string object per template: /items/1 and /items/2 give the same one, whose series the
    // classifier then finds by reference
    private readonly Dictionary<string, string> _templates = new(StringComparer.Ordinal);

    public string Of(HttpMessage request)
    {
        var host = request.Header("host") ?? "";
        var target = request.TargetBytes;
        var end = target.IndexOfAny((byte)'?', (byte)'#');
        var path = end < 0 ? target : target[..end];
        var hash = SpelledStrings.Hash(path) ^ SpelledStrings.Hash(MemoryMarshal.AsBytes(host.AsSpan())) * 0x9E3779B97F4A7C15UL;
        var set = (int)(hash >> 40) & (MaxRemembered / 2 - 1);
        for (var way = 0; way < 2; way++)
        {
            ref var slot = ref _slots[2 * set + way];
            if (slot.Host is not null && (ReferenceEquals(slot.Host, host) || slot.Host == host) && path.SequenceEqual(slot.Path))
                return slot.Template;
        }
        var made = Make(HostWithoutPort(host), path);
        if (_templates.TryGetValue(made, out var same)) made = same;
        else if (_templates.Count < MaxRemembered) _templates.Add(made, made);
        // two ways per set, the older of the two replaced
        var into = _slots[2 * set].Host is null || (_slots[2 * set + 1].Host is not null && _secondNewer[set]) ? 0 : 1;
        _slots[2 * set + into] = (host, path.ToArray(), made);
        _secondNewer[set] = into == 1;
        return made;
    }

    public static string HostWithoutPort(string host)
    {
        if (host.StartsWith('[')) return host; // an IPv6 literal keeps its brackets and port
        var colon = host.LastIndexOf(':');
        return colon > 0 && host.IndexOf(':') == colon ? host[..colon] : host;
    }

    public static string Make(string host, ReadOnlySpan<byte> path)
    {
        // an absolute-form target carries scheme and authority: the path starts after them
        var scheme = path.IndexOf("://"u8);
        if (scheme > 0)
        {
            var slash = path[(scheme + 3)..].IndexOf((byte)'/');
            path = slash < 0 ? "/"u8 : path[(scheme + 3 + slash)..];
        }
        var sb = new StringBuilder(host.Length + path.Length + 8).Append(host);
        foreach (var range in path.Split((byte)'/'))
        {
            var segment = path[range];
            if (range.Start.Value == 0 && segment.IsEmpty) continue;
            sb.Append('/');
            if (!segment.IsEmpty && AllDigits(segment)) sb.Append("INTEGER");
            else if (Validators.Uuid(segment) || (segment.Length == 36 && segment[8] == '-' && IsHexDashes(segment))) sb.Append("UUID");
            else sb.Append(HttpText.Decode(segment));
        }
        if (path.IsEmpty) sb.Append('/');
        return sb.ToString();
    }

    private static bool AllDigits(ReadOnlySpan<byte> s)
    {
        foreach (var c in s)
            if (!Validators.IsDigit(c)) return false;
        return true;
    }

    private static bool IsHexDashes(ReadOnlySpan<byte> s)
    {
        foreach (var c in s)
            if (c != '-' && !Validators.IsHex(c)) return false;
        return true;
    }
}
