using System.Buffers;
using System.Buffers.Text;
using System.IO.Compression;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Text;
using Collector.Connections;
using Collector.Http;
using Collector.Metrics;

namespace Collector.Output;

/// <summary>The first step of the output: a body sent with a content-coding is decoded once, in
/// place, so that every later step (classification, masking, the body policy, the writer) sees the
/// bytes the application meant.</summary>
public static class ContentDecoder
{
    /// <summary>Decodes a gzip / deflate / br body once (in place), to at most limit bytes. A cut
    /// body (cap, gap, incomplete) decodes as far as its bytes go.</summary>
    public static void Decode(HttpMessage m, int limit, CollectorMetrics? metrics)
    {
        if (m.DecodeAttempted || m.BodyLength == 0) return;
        m.DecodeAttempted = true;
        var i = m.FindHeader("content-encoding"u8);
        if (i < 0 || m.FindHeader("content-encoding"u8, i + 1) >= 0) return; // none, or several codings: sent as is
        var value = HttpText.Trim(m.HeaderValue(i));
        string coding;
        if (HttpText.EqualsLower(value, "gzip"u8) || HttpText.EqualsLower(value, "x-gzip"u8)) coding = "gzip";
        else if (HttpText.EqualsLower(value, "deflate"u8)) coding = "deflate";
        else if (HttpText.EqualsLower(value, "br"u8)) coding = "br";
        else return; // identity, compress, zstd, lists of codings: left as they are (header kept)
        var body = m.BodyArray!;
        var length = m.BodyLength;
        var cut = m.BodyTruncated || m.BodyHasGap || m.Incomplete;
        var output = BufferPool.Rent(Math.Min(Math.Max(length * 4, 4096), limit + 1));
        var written = 0;
        var overflow = false;
        try
        {
            if (coding == "br")
            {
                using var decoder = new BrotliDecoder();
                var src = body.AsSpan(0, length);
                while (true)
                {
                    var status = decoder.Decompress(src, output.AsSpan(written), out var used, out var n);
                    src = src[used..];
                    written += n;
                    if (status == OperationStatus.DestinationTooSmall)
                    {
                        if (written > limit) { overflow = true; break; }
                        Grow(ref output, written, limit);
                        continue;
                    }
                    if (status == OperationStatus.InvalidData || (status == OperationStatus.NeedMoreData && !cut))
                        throw new InvalidDataException("brotli stream is invalid or ends early");
                    break; // Done, or a cut body whose end is missing
                }
            }
            else
            {
                using var input = new MemoryStream(body, 0, length, writable: false);
                using Stream stream = coding == "gzip" ? new GZipStream(input, CompressionMode.Decompress)
                    // RFC 9110 says zlib-wrapped; raw deflate is common in the field: tell them apart by the zlib header
                    : length >= 2 && (body[0] & 0x0f) == 8 && (body[0] >> 4) <= 7 && ((body[0] << 8) | body[1]) % 31 == 0
                        ? new ZLibStream(input, CompressionMode.Decompress)
                        : new DeflateStream(input, CompressionMode.Decompress);
                while (true)
                {
                    if (written == output.Length)
                    {
                        if (written > limit) { overflow = true; break; } // a decompression bomb stops here
                        Grow(ref output, written, limit);
                    }
                    int n;
                    try
                    {
                        n = stream.Read(output, written, output.Length - written);
                    }
                    catch (Exception e) when (e is InvalidDataException or IOException && cut && written > 0)
                    {
                        break; // the cut end of a cut body
                    }
                    if (n == 0) break;
                    written += n;
                }
            }
        }
        catch (Exception e) when (e is InvalidDataException or IOException)
        {
            // bytes that do not inflate (zlib's own errors, e.g. a preset dictionary, are IOExceptions)
            BufferPool.Return(output);
            metrics?.BodyDecodeFailures.Increment();
            return;
        }
        if (written > limit)
        {
            written = limit;
            overflow = true;
        }
        metrics?.BodiesDecoded.Increment();
        m.ReplaceBodyDecoded(output, written, coding, overflow);
    }

    private static void Grow(ref byte[] buffer, int used, int limit)
    {
        var bigger = BufferPool.Rent(Math.Max(Math.Min(buffer.Length * 2, limit + 1), buffer.Length + 1));
        buffer.AsSpan(0, used).CopyTo(bigger);
        BufferPool.Return(buffer);
        buffer = bigger;
    }
}
