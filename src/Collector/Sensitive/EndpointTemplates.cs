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
    // the last template of each (host, path) found, in a table found by a hash of both
    private readonly TwoWayTable<(string? Host, byte[] Path, string Template)> _known = new(MaxRemembered);
    // one string object per template: /items/1 and /items/2 give the same one, whose series the
    // classifier then finds by reference (while there is room for new templates)
    private readonly Dictionary<string, string> _templates = new(StringComparer.Ordinal);

    public string Of(HttpMessage request)
    {
        var host = request.Header("host") ?? "";
        var target = request.TargetBytes;
        var end = target.IndexOfAny((byte)'?', (byte)'#');
        var path = end < 0 ? target : target[..end];
        var set = _known.SetOf(TwoWayTable.Hash(path, TwoWayTable.Hash(MemoryMarshal.AsBytes(host.AsSpan()))));
        for (var way = 0; way < 2; way++)
        {
            ref var slot = ref _known.Way(set, way);
            if (slot.Host is not null && (ReferenceEquals(slot.Host, host) || slot.Host == host) && path.SequenceEqual(slot.Path))
            {
                _known.Used(set, way);
                return slot.Template;
            }
        }
        var made = Make(HostWithoutPort(host), path);
        if (_templates.TryGetValue(made, out var same)) made = same;
        else if (_templates.Count < MaxRemembered) _templates.Add(made, made);
        _known.Add(set, (host, path.ToArray(), made));
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
