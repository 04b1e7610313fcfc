using System.Buffers.Binary;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace Collector.Kernel.Go;

/// <summary>Thrown while a file is read for what it is not, or cannot be read as it claims; caught once,
/// by <see cref="GoBinary.Analyze"/>, and turned into the answer's status and reason.</summary>
internal sealed class GoAnalysisException(GoBinaryStatus status, string message) : Exception(message)
{
    public GoBinaryStatus Status { get; } = status;

    public static GoAnalysisException Invalid(string message) => new(GoBinaryStatus.Invalid, message);
}

/// <summary>The parts of an ELF64 little-endian file that the Go analysis needs: program headers,
/// section headers and bounded reads. Reads with pread, not through a mapping: a binary rewritten
/// while it is read must give an error, not a SIGBUS that ends the collector. Every offset and size
/// taken from the file is checked against the file's length before it is used, and every table read
/// has a ceiling, so a hostile file costs at most a bounded read and an <see cref="GoAnalysisException"/>.</summary>
internal sealed class ElfImage : IDisposable
{
    public const ushort MachineX86_64 = 62;
    public const ushort MachineAarch64 = 183;
    public const ushort TypeDyn = 3;
    private const uint PtLoad = 1;
    public const uint PfX = 1;
    public const uint PfW = 2;
    public const uint ShtSymtab = 2;
    public const uint ShtRela = 4;
    private const uint ShtNobits = 8;

    /// <summary>No table this analysis reads is near this size in real binaries (kubelet's pclntab
    /// is tens of MB); it keeps a hostile header from making us allocate the whole disk.</summary>
    public const long MaxTableBytes = 256L << 20;

    // Real binaries have a dozen program headers and under a hundred sections, each header and
    // symbol of the ELF64 size (56, 64, 24 bytes): larger entry sizes are allowed by the format, but
    // not without bound
    private const int MaxProgramHeaders = 1024;
    private const int MaxEntrySize = 256;

    private readonly SafeFileHandle _file;

    public long Length { get; }
    public ushort Type { get; }
    public ushort Machine { get; }
    public IReadOnlyList<Segment> Loads { get; }
    public IReadOnlyList<Section> Sections { get; }

    public readonly record struct Segment(ulong Vaddr, long Offset, ulong FileSize, uint Flags);

    public readonly record struct Section(string Name, uint Type, ulong Addr, long Offset, long Size, uint Link, long EntSize)
    {
        public bool HasFileBytes => Type != ShtNobits;
    }

    private ElfImage(SafeFileHandle file, long length, ushort type, ushort machine, List<Segment> loads, List<Section> sections)
    {
        _file = file;
        Length = length;
        Type = type;
        Machine = machine;
        Loads = loads;
        Sections = sections;
    }

    /// <summary>Opens the file and reads its headers; null with a reason when it is not an ELF64
    /// little-endian file (then it is simply not something this analysis looks at).</summary>
    public static ElfImage? Open(string path, out string? notElf)
    {
        var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        try
        {
            var image = ReadHeaders(file, out notElf);
            if (image is null) file.Dispose();
            return image;
        }
        catch
        {
            // the handle is ours until the image owns it; the exception itself goes on to the caller
            file.Dispose();
            throw;
        }
    }

    private static ElfImage? ReadHeaders(SafeFileHandle file, out string? notElf)
    {
        var length = RandomAccess.GetLength(file);
        Span<byte> eh = stackalloc byte[64];
        if (length < 64 || RandomAccess.Read(file, eh, 0) != 64 || eh[0] != 0x7f || !eh[1..4].SequenceEqual("ELF"u8))
        {
            notElf = "not an ELF file";
            return null;
        }
        if (eh[4] != 2 || eh[5] != 1)
        {
            notElf = "not a 64-bit little-endian ELF file";
            return null;
        }
        notElf = null;
        var type = BinaryPrimitives.ReadUInt16LittleEndian(eh[0x10..]);
        var machine = BinaryPrimitives.ReadUInt16LittleEndian(eh[0x12..]);
        var phoff = BinaryPrimitives.ReadInt64LittleEndian(eh[0x20..]);
        var shoff = BinaryPrimitives.ReadInt64LittleEndian(eh[0x28..]);
        var phentsize = BinaryPrimitives.ReadUInt16LittleEndian(eh[0x36..]);
        var phnum = BinaryPrimitives.ReadUInt16LittleEndian(eh[0x38..]);
        var shentsize = BinaryPrimitives.ReadUInt16LittleEndian(eh[0x3A..]);
        var shnum = BinaryPrimitives.ReadUInt16LittleEndian(eh[0x3C..]);
        var shstrndx = BinaryPrimitives.ReadUInt16LittleEndian(eh[0x3E..]);

        var loads = new List<Segment>();
        if (phnum > 0)
        {
            if (phentsize is < 56 or > MaxEntrySize || phnum > MaxProgramHeaders || phoff <= 0 || phoff > length - (long)phentsize * phnum)
                throw GoAnalysisException.Invalid($"program headers out of the file (offset {phoff}, {phnum} x {phentsize})");
            var ph = ReadExactly(file, length, phoff, phentsize * phnum);
            for (var i = 0; i < phnum; i++)
            {
                var p = ph.AsSpan(i * phentsize, 56);
                if (BinaryPrimitives.ReadUInt32LittleEndian(p) != PtLoad) continue;
                var offset = BinaryPrimitives.ReadInt64LittleEndian(p[8..]);
                var filesz = BinaryPrimitives.ReadUInt64LittleEndian(p[0x20..]);
                // a segment whose bytes lie past the end of the file is kept only up to the end: its
                // addresses beyond that have no file offset, and asking for them gives an error
                if (offset < 0 || offset > length) continue;
                filesz = Math.Min(filesz, (ulong)(length - offset));
                loads.Add(new Segment(BinaryPrimitives.ReadUInt64LittleEndian(p[0x10..]), offset, filesz,
                    BinaryPrimitives.ReadUInt32LittleEndian(p[4..])));
            }
        }

        var sections = new List<Section>();
        // shnum 0 with shoff set means more than 65,279 sections (the count is in section 0): no Go
        // binary has that many, so such a file is read as one without sections
        if (shnum > 0 && shoff > 0)
        {
            if (shentsize is < 64 or > MaxEntrySize || shoff > length - (long)shentsize * shnum)
                throw GoAnalysisException.Invalid($"section headers out of the file (offset {shoff}, {shnum} x {shentsize})");
            var sh = ReadExactly(file, length, shoff, shentsize * shnum);
            byte[]? names = null;
            if (shstrndx < shnum)
            {
                var s = sh.AsSpan(shstrndx * shentsize, 64);
                var off = BinaryPrimitives.ReadInt64LittleEndian(s[0x18..]);
                var size = BinaryPrimitives.ReadInt64LittleEndian(s[0x20..]);
                if (off < 0 || size < 0 || size > 1 << 20 || off > length - size)
                    throw GoAnalysisException.Invalid($"section name table out of the file (offset {off}, size {size})");
                names = ReadExactly(file, length, off, (int)size);
            }
            for (var i = 0; i < shnum; i++)
            {
                var s = sh.AsSpan(i * shentsize, 64);
                var nameOff = BinaryPrimitives.ReadUInt32LittleEndian(s);
                var name = "";
                if (names is not null && nameOff < names.Length)
                {
                    var rest = names.AsSpan((int)nameOff);
                    var end = rest.IndexOf((byte)0);
                    name = Encoding.Latin1.GetString(end < 0 ? rest : rest[..end]);
                }
                sections.Add(new Section(name, BinaryPrimitives.ReadUInt32LittleEndian(s[4..]),
                    BinaryPrimitives.ReadUInt64LittleEndian(s[0x10..]), BinaryPrimitives.ReadInt64LittleEndian(s[0x18..]),
                    BinaryPrimitives.ReadInt64LittleEndian(s[0x20..]), BinaryPrimitives.ReadUInt32LittleEndian(s[0x28..]),
                    BinaryPrimitives.ReadInt64LittleEndian(s[0x38..])));
            }
        }
        return new ElfImage(file, length, type, machine, loads, sections);
    }

    public Section? FindSection(string name)
    {
        foreach (var s in Sections)
            if (s.Name == name) return s;
        return null;
    }

    /// <summary>The section's bytes after checking it lies in the file and is not over <paramref name="limit"/>.</summary>
    public byte[] ReadSection(Section s, long limit = MaxTableBytes)
    {
        if (!s.HasFileBytes) throw GoAnalysisException.Invalid($"section {s.Name} has no bytes in the file");
        return Read(s.Offset, s.Size, limit, "section " + s.Name);
    }

    /// <summary><paramref name="count"/> bytes at <paramref name="offset"/>, after checking both
    /// against the file and the ceiling; <paramref name="what"/> names the read in the error.</summary>
    public byte[] Read(long offset, long count, long limit, string what)
    {
        if (count < 0 || count > limit || count > int.MaxValue)
            throw GoAnalysisException.Invalid($"{what}: size {count} is beyond what a real binary has (limit {limit})");
        if (offset < 0 || offset > Length - count)
            throw GoAnalysisException.Invalid($"{what}: {count} bytes at offset {offset} lie outside the file ({Length} bytes)");
        return ReadExactly(_file, Length, offset, (int)count);
    }

    public void Read(long offset, Span<byte> destination, string what)
    {
        if (offset < 0 || offset > Length - destination.Length)
            throw GoAnalysisException.Invalid($"{what}: {destination.Length} bytes at offset {offset} lie outside the file ({Length} bytes)");
        Fill(_file, offset, destination);
    }

    /// <summary>The file offset of a virtual address whose <paramref name="count"/> bytes all lie in
    /// one loaded segment's file bytes (the same mapping the kernel makes), or -1.</summary>
    public long FileOffset(ulong vaddr, ulong count = 1)
    {
        foreach (var s in Loads)
        {
            if (vaddr < s.Vaddr || vaddr - s.Vaddr >= s.FileSize || count > s.FileSize - (vaddr - s.Vaddr)) continue;
            return s.Offset + (long)(vaddr - s.Vaddr);
        }
        return -1;
    }

    /// <summary>The loaded segment holding a file offset, if any.</summary>
    public Segment? SegmentOfOffset(long offset)
    {
        foreach (var s in Loads)
            if (offset >= s.Offset && (ulong)(offset - s.Offset) < s.FileSize) return s;
        return null;
    }

    public long RequireFileOffset(ulong vaddr, ulong count, string what)
    {
        var off = FileOffset(vaddr, count);
        if (off < 0) throw GoAnalysisException.Invalid($"{what}: address 0x{vaddr:x} (+{count}) is not in a loaded part of the file");
        return off;
    }

    public byte[] ReadAt(ulong vaddr, long count, long limit, string what)
    {
        if (count < 0 || count > limit)
            throw GoAnalysisException.Invalid($"{what}: size {count} is beyond what a real binary has (limit {limit})");
        return Read(RequireFileOffset(vaddr, (ulong)count, what), count, limit, what);
    }

    public ulong ReadU64At(ulong vaddr, string what)
    {
        Span<byte> b = stackalloc byte[8];
        Read(RequireFileOffset(vaddr, 8, what), b, what);
        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }

    /// <summary>Looks up symbols by exact name in .symtab (any type: Go's itabs are data objects):
    /// name → (value, size). Names compare as bytes; nothing is allocated per symbol.</summary>
    public Dictionary<string, (ulong Value, ulong Size)> FindSymbols(IReadOnlyList<string> wanted)
    {
        var found = new Dictionary<string, (ulong, ulong)>(StringComparer.Ordinal);
        Section? symtab = null;
        foreach (var s in Sections)
            if (s.Type == ShtSymtab) { symtab = s; break; }
        if (symtab is not { } st) return found;
        if (st.Link >= Sections.Count || st.EntSize is < 24 or > MaxEntrySize)
            throw GoAnalysisException.Invalid($"symbol table: string table index {st.Link} or entry size {st.EntSize} is wrong");
        var syms = ReadSection(st);
        var strs = ReadSection(Sections[(int)st.Link]);
        var names = wanted.Select(w => (w, Encoding.ASCII.GetBytes(w))).ToArray();
        for (var p = 0; p + 24 <= syms.Length && found.Count < names.Length; p += (int)st.EntSize)
        {
            var nameOff = BinaryPrimitives.ReadUInt32LittleEndian(syms.AsSpan(p));
            if (nameOff == 0 || nameOff >= strs.Length) continue;
            var name = strs.AsSpan((int)nameOff);
            foreach (var (w, bytes) in names)
            {
                if (name.Length <= bytes.Length || name[bytes.Length] != 0 || !name.StartsWith(bytes)) continue;
                // shndx 0 is an undefined reference, not the definition
                if (BinaryPrimitives.ReadUInt16LittleEndian(syms.AsSpan(p + 6)) != 0)
                    found.TryAdd(w, (BinaryPrimitives.ReadUInt64LittleEndian(syms.AsSpan(p + 8)), BinaryPrimitives.ReadUInt64LittleEndian(syms.AsSpan(p + 16))));
                break;
            }
        }
        return found;
    }

    /// <summary>The addend of an R_X86_64_RELATIVE relocation of the word at <paramref name="vaddr"/>:
    /// the word's value once loaded, for a PIE whose linker left the word itself 0.</summary>
    public ulong? RelativeRelocationAddend(ulong vaddr)
    {
        const uint RX8664Relative = 8;
        foreach (var s in Sections)
        {
            if (s.Type != ShtRela || s.EntSize != 24) continue;
            var rela = ReadSection(s);
            for (var p = 0; p + 24 <= rela.Length; p += 24)
            {
                if (BinaryPrimitives.ReadUInt64LittleEndian(rela.AsSpan(p)) != vaddr) continue;
                if ((uint)BinaryPrimitives.ReadUInt64LittleEndian(rela.AsSpan(p + 8)) != RX8664Relative) continue;
                return BinaryPrimitives.ReadUInt64LittleEndian(rela.AsSpan(p + 16));
            }
        }
        return null;
    }

    private static byte[] ReadExactly(SafeFileHandle file, long length, long offset, int count)
    {
        if (offset < 0 || count < 0 || offset > length - count)
            throw GoAnalysisException.Invalid($"{count} bytes at offset {offset} lie outside the file ({length} bytes)");
        var buffer = GC.AllocateUninitializedArray<byte>(count);
        Fill(file, offset, buffer);
        return buffer;
    }

    private static void Fill(SafeFileHandle file, long offset, Span<byte> buffer)
    {
        var done = 0;
        while (done < buffer.Length)
        {
            var n = RandomAccess.Read(file, buffer[done..], offset + done);
            if (n <= 0) throw GoAnalysisException.Invalid("the file is shorter than when it was opened (rewritten while being read?)");
            done += n;
        }
    }

    public void Dispose() => _file.Dispose();
}
