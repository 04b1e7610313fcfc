using System.Text;
using Collector.Http;

namespace Collector.Sensitive;

/// <summary>The endpoint label of the sensitive-data series: host (without port) and path, with
/// the segments that name one object among many folded (all digits → INTEGER, a UUID → UUID, as
/// Akto's templates spell them), so that /users/1 and /users/2 are one series. The last template
/// is kept: an exchange of the same target does not make it again.</summary>
public sealed class EndpointTemplates
{
    private string? _lastHost;
    private byte[] _lastPath = [];
    private string _last = "";

    public string Of(HttpMessage request)
    {
        var host = request.Header("host") ?? "";
        var target = request.TargetBytes;
        var end = target.IndexOfAny((byte)'?', (byte)'#');
        var path = end < 0 ? target : target[..end];
        if (ReferenceEquals(host, _lastHost) && path.SequenceEqual(_lastPath)) return _last;
        _lastHost = host;
        _lastPath = path.ToArray();
        return _last = Make(HostWithoutPort(host), path);
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
