using System.Buffers.Binary;
using System.Text;

namespace Collector.Kernel;

/// <summary>Finds which of a set of functions an ELF64 file defines (in .dynsym, else .symtab) and
/// their file offsets, so that only files that really carry a TLS library get uprobes, whatever
/// their name (libssl.so.3, a program with OpenSSL linked in statically, libgnutls.so.30), and so
/// that libbpf need not search the file again for every probe. This runs right after a process's
/// exec, racing its first TLS call: it compares bytes, allocating nothing per symbol (node's
/// binary has some 200,000).</summary>
public static class ElfSymbols
{
    private const uint ShtSymtab = 2;
    private const uint ShtDynsym = 11;
    private const int SttFunc = 2;
    private const int SttGnuIfunc = 10;

    /// <summary>Function name → file offset of its entry, for each wanted name the file defines.
    /// Reads with pread into buffers, not through a mapping: a library rewritten while it is being
    /// read must give an error, not a SIGBUS that ends the collector.</summary>
    public static Dictionary<string, ulong> FindFunctions(string path, IReadOnlyCollection<string> wanted)
    {
        var found = new Dictionary<string, ulong>(StringComparer.Ordinal);
        var names = wanted.Select(w => (w, Encoding.ASCII.GetBytes(w))).ToArray();
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        var length = RandomAccess.GetLength(file);
        if (length < 64) return found;
        Span<byte> eh = stackalloc byte[64];
        if (RandomAccess.Read(file, eh, 0) != 64) return found;
        if (eh[0] != 0x7f || eh[1] != (byte)'E' || eh[2] != (byte)'L' || eh[3] != (byte)'F') return found;
        if (eh[4] != 2 || eh[5] != 1) return found; // ELF64 little-endian only (x86_64, arm64)
        var shoff = BinaryPrimitives.ReadInt64LittleEndian(eh[0x28..]);
        var shentsize = BinaryPrimitives.ReadUInt16LittleEndian(eh[0x3A..]);
        var shnum = BinaryPrimitives.ReadUInt16LittleEndian(eh[0x3C..]);
        if (shoff <= 0 || shentsize < 64 || shnum == 0 || shoff + (long)shentsize * shnum > length) return found;
        var sections = ReadExactly(file, shoff, shentsize * shnum);
        if (sections is null) return found;

        // .dynsym first: exported functions are what applications call; .symtab only for what is missing
        foreach (var kind in new[] { ShtDynsym, ShtSymtab })
        {
            for (var i = 0; i < shnum && found.Count < names.Length; i++)
            {
                var sh = sections.AsSpan(i * shentsize, shentsize);
                if (BinaryPrimitives.ReadUInt32LittleEndian(sh[4..]) != kind) continue;
                var off = BinaryPrimitives.ReadInt64LittleEndian(sh[0x18..]);
                var size = BinaryPrimitives.ReadInt64LittleEndian(sh[0x20..]);
                var link = BinaryPrimitives.ReadUInt32LittleEndian(sh[0x28..]);
                var entsize = BinaryPrimitives.ReadInt64LittleEndian(sh[0x38..]);
                if (link >= shnum || entsize < 24 || size <= 0 || off < 0 || off + size > length || size > int.MaxValue) continue;
                var strSh = sections.AsSpan((int)link * shentsize, shentsize);
                var strOff = BinaryPrimitives.ReadInt64LittleEndian(strSh[0x18..]);
                var strSize = BinaryPrimitives.ReadInt64LittleEndian(strSh[0x20..]);
                if (strSize <= 0 || strOff < 0 || strOff + strSize > length || strSize > int.MaxValue) continue;
                var syms = ReadExactly(file, off, (int)size);
                var strs = ReadExactly(file, strOff, (int)strSize);
                if (syms is null || strs is null) continue;
                Match(syms, (int)entsize, strs, sections, shentsize, shnum, names, found);
            }
        }
        return found;
    }

    private static void Match(byte[] syms, int entsize, byte[] strs, byte[] sections, int shentsize, int shnum,
        (string Name, byte[] Bytes)[] wanted, Dictionary<string, ulong> found)
    {
        for (var p = 0; p + entsize <= syms.Length; p += entsize)
        {
            var sym = syms.AsSpan(p, 24);
            var type = sym[4] & 0xf;
            var shndx = BinaryPrimitives.ReadUInt16LittleEndian(sym[6..]);
            if ((type != SttFunc && type != SttGnuIfunc) || shndx == 0 || shndx >= shnum) continue;
            var nameOff = BinaryPrimitives.ReadUInt32LittleEndian(sym);
            if (nameOff >= strs.Length) continue;
            var name = strs.AsSpan((int)nameOff);
            foreach (var (w, bytes) in wanted)
            {
                // the name, then NUL or a symbol version (SSL_write@@OPENSSL_3.0.0)
                if (!name.StartsWith(bytes) || name.Length <= bytes.Length) continue;
                var next = name[bytes.Length];
                if (next != 0 && next != (byte)'@') continue;
                if (found.ContainsKey(w)) break;
                var value = BinaryPrimitives.ReadUInt64LittleEndian(sym[8..]);
                // file offset = address - section address + section file offset
                var owner = sections.AsSpan(shndx * shentsize, shentsize);
                var addr = BinaryPrimitives.ReadUInt64LittleEndian(owner[0x10..]);
                var secOff = BinaryPrimitives.ReadUInt64LittleEndian(owner[0x18..]);
                if (value >= addr) found[w] = value - addr + secOff;
                break;
            }
        }
    }

    private static byte[]? ReadExactly(Microsoft.Win32.SafeHandles.SafeFileHandle file, long offset, int count)
    {
        var buffer = new byte[count];
        var done = 0;
        while (done < count)
        {
            var n = RandomAccess.Read(file, buffer.AsSpan(done), offset + done);
            if (n <= 0) return null; // the file shrank under us
            done += n;
        }
        return buffer;
    }
}
