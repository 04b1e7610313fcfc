using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Text;

namespace Collector.Kernel;

/// <summary>Finds which of a set of functions an ELF64 file defines (in .dynsym, else .symtab) and
/// their file offsets, so that only files that really carry a TLS library get uprobes, whatever
/// their name (libssl.so.3, a program with OpenSSL linked in statically, libgnutls.so.30), and so
/// that libbpf need not search the file again for every probe. This runs right after a process's
/// exec, racing its first TLS call: it maps the file and compares bytes, allocating nothing per
/// symbol (node's binary has some 200,000).</summary>
public static class ElfSymbols
{
    private const uint ShtSymtab = 2;
    private const uint ShtDynsym = 11;
    private const int SttFunc = 2;
    private const int SttGnuIfunc = 10;

    /// <summary>Function name → file offset of its entry, for each wanted name the file defines.</summary>
    public static Dictionary<string, ulong> FindFunctions(string path, IReadOnlyCollection<string> wanted)
    {
        var found = new Dictionary<string, ulong>(StringComparer.Ordinal);
        using var file = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        using var view = file.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        unsafe
        {
            byte* basePtr = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref basePtr);
            try
            {
                // the view's length, not FileInfo's: for a symbolic link (libgnutls.so.30) that is the link's own
                var length = view.Capacity;
                if (length < 64) return found;
                var elf = new ReadOnlySpan<byte>(basePtr + view.PointerOffset, (int)Math.Min(length, int.MaxValue));
                Scan(elf, wanted.Select(w => (w, Encoding.ASCII.GetBytes(w))).ToArray(), found);
            }
            finally
            {
                view.SafeMemoryMappedViewHandle.ReleasePointer();
            }
        }
        return found;
    }

    private static void Scan(ReadOnlySpan<byte> elf, (string Name, byte[] Bytes)[] wanted, Dictionary<string, ulong> found)
    {
        if (elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F') return;
        if (elf[4] != 2 || elf[5] != 1) return; // ELF64 little-endian only (x86_64, arm64)
        var shoff = BinaryPrimitives.ReadInt64LittleEndian(elf[0x28..]);
        var shentsize = BinaryPrimitives.ReadUInt16LittleEndian(elf[0x3A..]);
        var shnum = BinaryPrimitives.ReadUInt16LittleEndian(elf[0x3C..]);
        if (shoff <= 0 || shentsize < 64 || shnum == 0 || shoff + (long)shentsize * shnum > elf.Length) return;
        var sections = elf.Slice((int)shoff, shentsize * shnum);

        // .dynsym first: exported functions are what applications call; .symtab only for what is missing
        foreach (var kind in new[] { ShtDynsym, ShtSymtab })
        {
            for (var i = 0; i < shnum && found.Count < wanted.Length; i++)
            {
                var s = sections.Slice(i * shentsize, shentsize);
                if (BinaryPrimitives.ReadUInt32LittleEndian(s[4..]) != kind) continue;
                var off = BinaryPrimitives.ReadInt64LittleEndian(s[0x18..]);
                var size = BinaryPrimitives.ReadInt64LittleEndian(s[0x20..]);
                var link = BinaryPrimitives.ReadUInt32LittleEndian(s[0x28..]);
                var entsize = BinaryPrimitives.ReadInt64LittleEndian(s[0x38..]);
                if (link >= shnum || entsize < 24 || size <= 0 || off < 0 || off + size > elf.Length) continue;
                var strSh = sections.Slice((int)link * shentsize, shentsize);
                var strOff = BinaryPrimitives.ReadInt64LittleEndian(strSh[0x18..]);
                var strSize = BinaryPrimitives.ReadInt64LittleEndian(strSh[0x20..]);
                if (strSize <= 0 || strOff < 0 || strOff + strSize > elf.Length) continue;
                var syms = elf.Slice((int)off, (int)size);
                var strs = elf.Slice((int)strOff, (int)strSize);
                for (var p = 0; p + entsize <= size; p += (int)entsize)
                {
                    var sym = syms.Slice(p, 24);
                    var type = sym[4] & 0xf;
                    var shndx = BinaryPrimitives.ReadUInt16LittleEndian(sym[6..]);
                    if ((type != SttFunc && type != SttGnuIfunc) || shndx == 0 || shndx >= shnum) continue;
                    var nameOff = BinaryPrimitives.ReadUInt32LittleEndian(sym);
                    if (nameOff >= strs.Length) continue;
                    var name = strs[(int)nameOff..];
                    foreach (var (w, bytes) in wanted)
                    {
                        // the name, then NUL or a symbol version (SSL_write@@OPENSSL_3.0.0)
                        if (!name.StartsWith(bytes) || name.Length <= bytes.Length) continue;
                        var next = name[bytes.Length];
                        if (next != 0 && next != (byte)'@') continue;
                        if (found.ContainsKey(w)) break;
                        var value = BinaryPrimitives.ReadUInt64LittleEndian(sym[8..]);
                        // file offset = address - section address + section file offset
                        var owner = sections.Slice(shndx * shentsize, shentsize);
                        var addr = BinaryPrimitives.ReadUInt64LittleEndian(owner[0x10..]);
                        var secOff = BinaryPrimitives.ReadUInt64LittleEndian(owner[0x18..]);
                        if (value >= addr) found[w] = value - addr + secOff;
                        break;
                    }
                }
            }
        }
    }
}
