using System.Buffers.Binary;
using System.Text;

namespace Collector.Kernel;

/// <summary>Reads which of a set of function names an ELF64 file defines (in .dynsym or .symtab),
/// so that only files that really carry a TLS library get uprobes, whatever their name
/// (libssl.so.3, a program with OpenSSL linked in statically, libgnutls.so.30).</summary>
public static class ElfSymbols
{
    private const uint ShtSymtab = 2;
    private const uint ShtDynsym = 11;
    private const int SttFunc = 2;

    public static HashSet<string> DefinedFunctions(string path, IReadOnlySet<string> wanted)
    {
        var found = new HashSet<string>(StringComparer.Ordinal);
        using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1, FileOptions.RandomAccess);
        Span<byte> eh = stackalloc byte[64];
        if (f.Read(eh) != 64 || eh[0] != 0x7f || eh[1] != (byte)'E' || eh[2] != (byte)'L' || eh[3] != (byte)'F')
            return found;
        if (eh[4] != 2 || eh[5] != 1) return found; // ELF64 little-endian only (x86_64, arm64)
        var shoff = BinaryPrimitives.ReadInt64LittleEndian(eh[0x28..]);
        var shentsize = BinaryPrimitives.ReadUInt16LittleEndian(eh[0x3A..]);
        var shnum = BinaryPrimitives.ReadUInt16LittleEndian(eh[0x3C..]);
        if (shoff <= 0 || shentsize < 64 || shnum == 0 || shnum > 65000) return found;
        var sh = ReadAt(f, shoff, shentsize * shnum);
        for (var i = 0; i < shnum; i++)
        {
            var s = sh.AsSpan(i * shentsize, shentsize);
            var type = BinaryPrimitives.ReadUInt32LittleEndian(s[4..]);
            if (type != ShtDynsym && type != ShtSymtab) continue;
            var off = BinaryPrimitives.ReadInt64LittleEndian(s[0x18..]);
            var size = BinaryPrimitives.ReadInt64LittleEndian(s[0x20..]);
            var link = BinaryPrimitives.ReadUInt32LittleEndian(s[0x28..]);
            var entsize = BinaryPrimitives.ReadInt64LittleEndian(s[0x38..]);
            if (link >= shnum || entsize < 24 || size <= 0 || size > 512L * 1024 * 1024) continue;
            var strSh = sh.AsSpan((int)link * shentsize, shentsize);
            var strOff = BinaryPrimitives.ReadInt64LittleEndian(strSh[0x18..]);
            var strSize = BinaryPrimitives.ReadInt64LittleEndian(strSh[0x20..]);
            if (strSize <= 0 || strSize > 512L * 1024 * 1024) continue;
            var syms = ReadAt(f, off, (int)size);
            var strs = ReadAt(f, strOff, (int)strSize);
            for (long p = 0; p + entsize <= size; p += entsize)
            {
                var sym = syms.AsSpan((int)p, 24);
                var info = sym[4];
                var shndx = BinaryPrimitives.ReadUInt16LittleEndian(sym[6..]);
                if ((info & 0xf) != SttFunc || shndx == 0) continue; // defined functions only
                var nameOff = BinaryPrimitives.ReadUInt32LittleEndian(sym);
                if (nameOff >= strs.Length) continue;
                var rest = strs.AsSpan((int)nameOff);
                var end = rest.IndexOf((byte)0);
                var name = rest[..(end < 0 ? rest.Length : end)];
                // symbol versions may be appended in .symtab (SSL_write@@OPENSSL_3.0.0)
                var at = name.IndexOf((byte)'@');
                if (at >= 0) name = name[..at];
                if (name.Length > 40 || name.Length < 6) continue;
                var str = Encoding.ASCII.GetString(name);
                if (wanted.Contains(str)) found.Add(str);
            }
        }
        return found;
    }

    private static byte[] ReadAt(FileStream f, long offset, int length)
    {
        var buf = new byte[length];
        f.Seek(offset, SeekOrigin.Begin);
        f.ReadExactly(buf);
        return buf;
    }
}
