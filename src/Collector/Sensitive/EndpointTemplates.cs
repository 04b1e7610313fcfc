using System.Text;
using Collector.Http;

namespace Collector.Sensitive;

/// <summary>The endpoint label of the sensitive-data series: host (without port) and path, with
/// the segments that name one object among many folded (all digits → INTEGER, a UUID → UUID, as
/// Akto's templates spell them), so that /users/1 and /users/2 are one series. The last template
/// are remembered by host and path (up to a bound): an exchange of a target seen before makes no
/// string, and its series is found by the same string object.</summary>
public sealed class EndpointTemplates
{
    private const int MaxRemembered = 4096;
    private readonly Dictionary<(string Host, int PathHash), List<(byte[] Path, string Template)>> _known = new();
    // one string object per template: /items/1 and /items/2 give the same one, whose series the
    // classifier then finds by reference
    private readonly Dictionary<string, string> _templates = new(StringComparer.Ordinal);
    private int _count;

    public string Of(HttpMessage request)
    {
        var host = request.Header("host") ?? "";
        var target = request.TargetBytes;
        var end = target.IndexOfAny((byte)'?', (byte)'#');
        var path = end < 0 ? target : target[..end];
        var key = (host, HashOf(path));
        if (_known.TryGetValue(key, out var entries))
            foreach (var (known, template) in entries)
                if (path.SequenceEqual(known)) return template;
        var made = Make(HostWithoutPort(host), path);
        if (_count < MaxRemembered)
        {
            if (!_templates.TryAdd(made, made)) made = _templates[made];
            if (entries is null) _known[key] = entries = new List<(byte[], string)>(1);
            entries.Add((path.ToArray(), made));
            _count++;
        }
        return made;
    }

    private static int HashOf(ReadOnlySpan<byte> s)
    {
        var h = new HashCode();
        h.AddBytes(s);
        return h.ToHashCode();
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
