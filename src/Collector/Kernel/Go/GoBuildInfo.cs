using System.Buffers.Binary;
using System.Text;

namespace Collector.Kernel.Go;

/// <summary>The Go version from the build info blob the Go linker writes into every binary since Go
/// 1.13, stripped or not: 16-aligned, starting "\xff Go buildinf:", then the pointer size and a flags
/// byte. With flag 2 (Go 1.18+) the version string follows inline at +32 (uvarint length, bytes);
/// before that, +16 holds a pointer to the version's Go string header {ptr, len}. The layout is
/// debug/buildinfo's; both forms were checked against go1.15.15 (pointer form, PIE too) and 1.19 to
/// 1.23 (inline form) built here.</summary>
internal static class GoBuildInfo
{
    private static ReadOnlySpan<byte> Magic => [0xFF, 0x20, 0x47, 0x6F, 0x20, 0x62, 0x75, 0x69, 0x6C, 0x64, 0x69, 0x6E, 0x66, 0x3A];
    private const int HeaderSize = 32;
    private const int Align = 16;
    // debug/buildinfo looks this far into the data; the blob is at the very start of .go.buildinfo
    private const int SearchWindow = 64 * 1024;
    // Real versions are short ("go1.23.5", "devel go1.24-4f5…  Tue …"); a longer one is not a version
    private const int MaxVersionLength = 256;
    private const byte FlagBigEndian = 1;
    private const byte FlagInline = 2;

    /// <summary>The version string, or null when the file has no build info (not a Go binary, or one
    /// built before Go 1.13). With section headers only <c>.go.buildinfo</c> is looked at, so a
    /// program that is not Go costs one section lookup; without section headers, the start of the
    /// first writable segment, as debug/buildinfo does.</summary>
    public static string? ReadVersion(ElfImage elf)
    {
        long start, size;
        if (elf.FindSection(".go.buildinfo") is { } s && s.HasFileBytes)
            (start, size) = (s.Offset, s.Size);
        else if (elf.Sections.Count == 0 && elf.Loads.FirstOrDefault(l => (l.Flags & ElfImage.PfW) != 0) is { FileSize: > 0 } w)
            (start, size) = (w.Offset, (long)Math.Min(w.FileSize, (ulong)SearchWindow));
        else
            return null;
        if (size < HeaderSize) return null;
        var data = elf.Read(start, Math.Min(size, SearchWindow), SearchWindow, "build info");

        var at = -1;
        for (var from = 0; from + HeaderSize <= data.Length;)
        {
            var i = data.AsSpan(from).IndexOf(Magic);
            if (i < 0) break;
            i += from;
            if (i % Align == 0 && i + HeaderSize <= data.Length) { at = i; break; }
            from = (i + Align) & ~(Align - 1);
        }
        if (at < 0) return null;

        var ptrSize = data[at + 14];
        var flags = data[at + 15];
        if ((flags & FlagInline) != 0)
        {
            // the uvarint length and the string follow the header; read them past the window if needed
            var tailStart = start + at + HeaderSize;
            var tailLength = Math.Min(start + size - tailStart, 10 + MaxVersionLength);
            var tail = elf.Read(tailStart, tailLength, 10 + MaxVersionLength, "build info version");
            var (length, used) = Uvarint(tail);
            if (used <= 0 || length == 0 || length > MaxVersionLength || (ulong)used + length > (ulong)tail.Length)
                throw GoAnalysisException.Invalid($"build info: version length {length} does not fit");
            return Checked(tail.AsSpan(used, (int)length));
        }

        if (ptrSize != 4 && ptrSize != 8) throw GoAnalysisException.Invalid($"build info: pointer size {ptrSize}");
        var big = (flags & FlagBigEndian) != 0;
        var versionPtr = Pointer(data.AsSpan(at + 16), ptrSize, big);
        var header = elf.ReadAt(versionPtr, 2 * ptrSize, 16, "build info version string header");
        var strPtr = Pointer(header, ptrSize, big);
        var strLen = Pointer(header.AsSpan(ptrSize), ptrSize, big);
        if (strLen == 0 || strLen > MaxVersionLength) throw GoAnalysisException.Invalid($"build info: version length {strLen}");
        return Checked(elf.ReadAt(strPtr, (long)strLen, MaxVersionLength, "build info version string"));
    }

    /// <summary>N of "go1.N", "go1.N.P", "go1.Nrc1" or "devel go1.N-…"; 0 for "go1"; null when the
    /// string names no Go 1 release.</summary>
    public static int? MinorVersion(string version)
    {
        var i = version.IndexOf("go1", StringComparison.Ordinal);
        if (i < 0) return null;
        i += 3;
        if (i == version.Length || version[i] != '.') return 0;
        var n = 0;
        var digits = 0;
        for (i++; i < version.Length && char.IsAsciiDigit(version[i]) && digits < 4; i++, digits++)
            n = n * 10 + (version[i] - '0');
        return digits == 0 ? null : n;
    }

    private static string Checked(ReadOnlySpan<byte> bytes)
    {
        foreach (var b in bytes)
            if (b < 0x20 || b > 0x7e) throw GoAnalysisException.Invalid("build info: the version is not printable text");
        return Encoding.ASCII.GetString(bytes);
    }

    private static ulong Pointer(ReadOnlySpan<byte> b, int size, bool big) => size == 8
        ? big ? BinaryPrimitives.ReadUInt64BigEndian(b) : BinaryPrimitives.ReadUInt64LittleEndian(b)
        : big ? BinaryPrimitives.ReadUInt32BigEndian(b) : BinaryPrimitives.ReadUInt32LittleEndian(b);

    /// <summary>encoding/binary's Uvarint: the value and the bytes used, or used ≤ 0 when the input
    /// ends first or the value overflows 64 bits.</summary>
    internal static (ulong Value, int Used) Uvarint(ReadOnlySpan<byte> b)
    {
        ulong x = 0;
        for (int i = 0, shift = 0; i < b.Length && i < 10; i++, shift += 7)
        {
            var c = b[i];
            if (c < 0x80)
            {
                if (i == 9 && c > 1) return (0, -(i + 1));
                return (x | (ulong)c << shift, i + 1);
            }
            x |= (ulong)(c & 0x7f) << shift;
        }
        return (0, 0);
    }
}
