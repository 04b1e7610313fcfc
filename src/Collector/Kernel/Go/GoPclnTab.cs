using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace Collector.Kernel.Go;

/// <summary>Go's own function table (the pclntab), which the runtime needs for stack traces and
/// garbage collection and which therefore survives <c>-ldflags "-s -w"</c>: name → entry address and
/// size of a function, without ELF symbols. Layouts follow runtime/symtab.go and debug/gosym:
/// <list type="bullet">
/// <item>magic 0xFFFFFFF0 (Go 1.18–1.19) and 0xFFFFFFF1 (1.20+): the same header of eight words
/// after the 8-byte prefix (nfunc, nfiles, textStart, funcnameOffset, cuOffset, filetabOffset,
/// pctabOffset, pclnOffset); the function table at pclnOffset is nfunc+1 pairs of u32 (entry offset
/// from textStart, offset of the function's _func), the last entry offset being the end of the text;
/// a _func starts with u32 entryOff, i32 nameOff (into the name table at funcnameOffset). Verified
/// on go1.19.8, go1.21.13, go1.22.12 and go1.23.5 in every build form.</item>
/// <item>0xFFFFFFFA (1.16–1.17): no textStart, pairs of (uintptr pc, uintptr funcOff), _func =
/// {uintptr entry, i32 nameOff}. Written from debug/gosym; not verified (no 1.16 or 1.17 toolchain
/// on Debian 12).</item>
/// <item>0xFFFFFFFB (1.2–1.15): recognised only, so that a too old binary is not read as another layout.</item>
/// </list></summary>
internal sealed class GoPclnTab
{
    public const uint Magic12 = 0xFFFFFFFB;
    public const uint Magic116 = 0xFFFFFFFA;
    public const uint Magic118 = 0xFFFFFFF0;
    public const uint Magic120 = 0xFFFFFFF1;
    // Go runs on far fewer functions than this even in the largest binaries (kubelet: ~90,000)
    private const ulong MaxFunctions = 10_000_000;
    // the window large tables are read through
    private const int Window = 1 << 20;

    private readonly ElfImage _elf;

    public uint Magic { get; }
    /// <summary>File offset of the header.</summary>
    public long Offset { get; }
    /// <summary>Virtual address of the header (what moduledata.pcHeader holds).</summary>
    public ulong Vaddr { get; }
    /// <summary>Where the table was found: the section's name, or "header scan".</summary>
    public string FoundIn { get; }
    public ulong FunctionCount { get; }
    /// <summary>The address function entries are relative to (1.18+): the header's, not the .text
    /// section's, which an external linker puts C code in front of (0x100 apart here).</summary>
    public ulong TextStart { get; }
    public ulong FuncnameOffset { get; }
    private readonly ulong _cuOffset;
    private readonly ulong _pclnOffset;
    /// <summary>Bytes from the header to the end of what may belong to the table (the section or,
    /// without one, the segment).</summary>
    private readonly long _extent;

    public string LayoutName => Magic switch
    {
        Magic120 => "go1.20+",
        Magic118 => "go1.18-1.19",
        Magic116 => "go1.16-1.17",
        _ => "go1.2-1.15",
    };

    private GoPclnTab(ElfImage elf, uint magic, long offset, ulong vaddr, string foundIn, long extent,
        ulong nfunc, ulong textStart, ulong funcnameOffset, ulong cuOffset, ulong pclnOffset)
    {
        _elf = elf;
        Magic = magic;
        Offset = offset;
        Vaddr = vaddr;
        FoundIn = foundIn;
        _extent = extent;
        FunctionCount = nfunc;
        TextStart = textStart;
        FuncnameOffset = funcnameOffset;
        _cuOffset = cuOffset;
        _pclnOffset = pclnOffset;
    }

    public static bool IsKnownMagic(uint magic) => magic is Magic12 or Magic116 or Magic118 or Magic120;

    /// <summary>Finds the table: the <c>.gopclntab</c> section (<c>.data.rel.ro.gopclntab</c> in an
    /// internally linked PIE); an externally linked PIE has no such section (the table sits inside
    /// .data.rel.ro), so then the loaded segments are scanned for the header's fixed bytes: magic,
    /// two zero pad bytes, minimum instruction size 1 and pointer size 8, 8-aligned.</summary>
    public static GoPclnTab Locate(ElfImage elf)
    {
        foreach (var name in new[] { ".gopclntab", ".data.rel.ro.gopclntab" })
        {
            if (elf.FindSection(name) is not { } s) continue;
            if (!s.HasFileBytes || s.Size < 8) throw GoAnalysisException.Invalid($"section {name} is empty");
            Span<byte> m = stackalloc byte[4];
            elf.Read(s.Offset, m, name);
            var magic = BinaryPrimitives.ReadUInt32LittleEndian(m);
            if (!IsKnownMagic(magic))
                throw new GoAnalysisException(GoBinaryStatus.Unsupported, $"unknown pclntab magic 0x{magic:X8} in {name}");
            return Parse(elf, s.Offset, s.Size, name);
        }
        return Scan(elf);
    }

    private static GoPclnTab Scan(ElfImage elf)
    {
        // the bytes after the magic's low byte: FF FF FF, pad 0, pad 0, minLC 1, ptrSize 8
        ReadOnlySpan<byte> tail = [0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x01, 0x08];
        uint unknownMagic = 0;
        string? rejected = null;
        var buffer = ArrayPool<byte>.Shared.Rent(Window);
        try
        {
            // data segments first: that is where Go's linkers put it; a linker that merges read-only
            // data into the text segment would put it there, so those are scanned too, last
            foreach (var seg in elf.Loads.OrderBy(l => (l.Flags & ElfImage.PfX) != 0))
            {
                for (long pos = 0; pos < (long)seg.FileSize; pos += Window - 8)
                {
                    var n = (int)Math.Min(Window, (long)seg.FileSize - pos);
                    if (n < 8) break;
                    var buf = buffer.AsSpan(0, n);
                    elf.Read(seg.Offset + pos, buf, "pclntab scan");
                    for (var from = 1; from + 7 <= n;)
                    {
                        var i = buf[from..].IndexOf(tail);
                        if (i < 0) break;
                        var at = from + i - 1;
                        from += i + 1;
                        var fileOff = seg.Offset + pos + at;
                        if (fileOff % 8 != 0 || buf[at] < 0xF0) continue;
                        var magic = BinaryPrimitives.ReadUInt32LittleEndian(buf[at..]);
                        if (!IsKnownMagic(magic)) { unknownMagic = magic; continue; }
                        try
                        {
                            return Parse(elf, fileOff, (long)seg.FileSize - (pos + at), "header scan");
                        }
                        catch (GoAnalysisException e) when (e.Status == GoBinaryStatus.Invalid)
                        {
                            // eight bytes that look like a header by chance: keep looking, and say so if none is right
                            rejected = e.Message;
                        }
                    }
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        if (rejected is not null) throw GoAnalysisException.Invalid("no valid pclntab header; last candidate: " + rejected);
        if (unknownMagic != 0) throw new GoAnalysisException(GoBinaryStatus.Unsupported, $"unknown pclntab magic 0x{unknownMagic:X8}");
        throw GoAnalysisException.Invalid("no pclntab found (no .gopclntab section and no header in the data)");
    }

    private static GoPclnTab Parse(ElfImage elf, long offset, long extent, string foundIn)
    {
        var hdr = elf.Read(offset, Math.Min(extent, 72), 72, "pclntab header");
        if (hdr.Length < 16) throw GoAnalysisException.Invalid("pclntab header is cut short");
        var magic = BinaryPrimitives.ReadUInt32LittleEndian(hdr);
        if (hdr[4] != 0 || hdr[5] != 0 || hdr[6] != 1 || hdr[7] != 8)
            throw GoAnalysisException.Invalid($"pclntab header {Convert.ToHexString(hdr.AsSpan(4, 4))}: not x86-64 (minLC 1, pointer size 8)");
        ulong Word(int i) => BinaryPrimitives.ReadUInt64LittleEndian(hdr.AsSpan(8 + 8 * i));
        var vaddr = OffsetToVaddr(elf, offset);
        var nfunc = Word(0);
        if (nfunc == 0 || nfunc > MaxFunctions) throw GoAnalysisException.Invalid($"pclntab: {nfunc} functions");
        switch (magic)
        {
            case Magic118 or Magic120:
            {
                if (hdr.Length < 72) throw GoAnalysisException.Invalid("pclntab header is cut short");
                var textStart = Word(2);
                var funcname = Word(3);
                var cu = Word(4);
                var pcln = Word(7);
                CheckOffsets(funcname, cu, Word(5), Word(6), pcln, (nfunc + 1) * 8, extent);
                if (textStart == 0 && elf.Type == ElfImage.TypeDyn)
                {
                    // a PIE linker may leave the word 0 and only relocate it at load (lld without
                    // --apply-dynamic-relocs): the relocation's addend is the value
                    textStart = elf.RelativeRelocationAddend(vaddr + 8 + 2 * 8)
                        ?? throw GoAnalysisException.Invalid("pclntab: textStart is 0 and no relocation gives it");
                }
                if (elf.FileOffset(textStart) < 0 || !IsExecutable(elf, textStart))
                    throw GoAnalysisException.Invalid($"pclntab: textStart 0x{textStart:x} is not in an executable segment");
                return new GoPclnTab(elf, magic, offset, vaddr, foundIn, extent, nfunc, textStart, funcname, cu, pcln);
            }
            case Magic116:
            {
                var funcname = Word(2);
                var cu = Word(3);
                var pcln = Word(6);
                CheckOffsets(funcname, cu, Word(4), Word(5), pcln, (nfunc + 1) * 16, extent);
                return new GoPclnTab(elf, magic, offset, vaddr, foundIn, extent, nfunc, 0, funcname, cu, pcln);
            }
            default:
                // 1.2-1.15: recognised for the "too old" answer; its functions are never looked up
                return new GoPclnTab(elf, magic, offset, vaddr, foundIn, extent, nfunc, 0, 0, 0, 0);
        }
    }

    private static void CheckOffsets(ulong funcname, ulong cu, ulong filetab, ulong pctab, ulong pcln, ulong functab, long extent)
    {
        // the tables follow one another in this order (runtime/symtab.go, cmd/link pcln.go)
        var e = (ulong)extent;
        if (!(funcname < cu && cu <= filetab && filetab <= pctab && pctab <= pcln && pcln < e && functab <= e - pcln))
            throw GoAnalysisException.Invalid($"pclntab: table offsets out of order or out of the table (names {funcname}, cu {cu}, files {filetab}, pc {pctab}, functab {pcln}+{functab}, extent {extent})");
    }

    private static ulong OffsetToVaddr(ElfImage elf, long offset)
    {
        var seg = elf.SegmentOfOffset(offset) ?? throw GoAnalysisException.Invalid($"pclntab at offset {offset} is not in a loaded segment");
        return seg.Vaddr + (ulong)(offset - seg.Offset);
    }

    private static bool IsExecutable(ElfImage elf, ulong vaddr)
    {
        foreach (var s in elf.Loads)
            if (vaddr >= s.Vaddr && vaddr - s.Vaddr < s.FileSize) return (s.Flags & ElfImage.PfX) != 0;
        return false;
    }

    /// <summary>Entry address and size (up to the next function's entry, which includes the int3
    /// padding to the next 32-byte boundary) of each wanted function the table has. The name table
    /// and the function records (4 and 6 MB in Prometheus) are read through one pooled 1 MiB
    /// window, so a large binary costs reads, not allocations.</summary>
    public Dictionary<string, (ulong Entry, ulong Size)> Find(IReadOnlyList<string> wanted)
    {
        if (Magic is not (Magic118 or Magic120 or Magic116))
            throw new GoAnalysisException(GoBinaryStatus.TooOld, $"pclntab layout {LayoutName} is not read");
        var found = new Dictionary<string, (ulong, ulong)>(StringComparer.Ordinal);
        var window = ArrayPool<byte>.Shared.Rent(Window);
        try
        {
            var nameOffsets = NameOffsets(wanted, window);
            if (nameOffsets.Count == 0) return found;

            var entrySize = Magic == Magic116 ? 16 : 8;
            var functab = _elf.Read(Offset + (long)_pclnOffset, (long)(FunctionCount + 1) * entrySize, ElfImage.MaxTableBytes, "pclntab function table");
            var record = Magic == Magic116 ? 12 : 8;
            var nameAt = Magic == Magic116 ? 8 : 4;
            var room = (ulong)_extent - _pclnOffset;
            // the records follow the table in its order: each window is read once, going forward
            ulong windowStart = 0, windowLength = 0;
            var single = new byte[16];
            for (var i = 0UL; i < FunctionCount && found.Count < wanted.Count; i++)
            {
                var funcOff = FuncOff(functab, i);
                if (funcOff > room || (ulong)record > room - funcOff)
                    throw GoAnalysisException.Invalid($"pclntab: a function record at {funcOff} lies past the table ({room} bytes)");
                ReadOnlySpan<byte> rec;
                if (funcOff >= windowStart && funcOff + (ulong)record <= windowStart + windowLength)
                {
                    rec = window.AsSpan((int)(funcOff - windowStart), record);
                }
                else if (funcOff >= windowStart)
                {
                    windowStart = funcOff;
                    windowLength = Math.Min(Window, room - funcOff);
                    _elf.Read(Offset + (long)(_pclnOffset + funcOff), window.AsSpan(0, (int)windowLength), "pclntab function records");
                    rec = window.AsSpan(0, record);
                }
                else
                {
                    // a record behind the window: not how linkers write them, so read on its own
                    _elf.Read(Offset + (long)(_pclnOffset + funcOff), single.AsSpan(0, record), "pclntab function record");
                    rec = single.AsSpan(0, record);
                }
                var nameOff = BinaryPrimitives.ReadInt32LittleEndian(rec[nameAt..]);
                if (!nameOffsets.TryGetValue(nameOff, out var name) || found.ContainsKey(name)) continue;
                ulong entry, next;
                if (Magic == Magic116)
                {
                    entry = BinaryPrimitives.ReadUInt64LittleEndian(functab.AsSpan((int)(i * 16)));
                    next = BinaryPrimitives.ReadUInt64LittleEndian(functab.AsSpan((int)((i + 1) * 16)));
                    if (BinaryPrimitives.ReadUInt64LittleEndian(rec) != entry)
                        throw GoAnalysisException.Invalid($"pclntab: {name}'s record and table entry disagree on its address");
                }
                else
                {
                    var entryOff = BinaryPrimitives.ReadUInt32LittleEndian(functab.AsSpan((int)(i * 8)));
                    var nextOff = BinaryPrimitives.ReadUInt32LittleEndian(functab.AsSpan((int)((i + 1) * 8)));
                    if (BinaryPrimitives.ReadUInt32LittleEndian(rec) != entryOff)
                        throw GoAnalysisException.Invalid($"pclntab: {name}'s record and table entry disagree on its address");
                    entry = TextStart + entryOff;
                    next = TextStart + nextOff;
                }
                if (next <= entry) throw GoAnalysisException.Invalid($"pclntab: {name} has no size (next function at 0x{next:x})");
                found[name] = (entry, next - entry);
            }
            return found;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(window);
        }
    }

    /// <summary>Where each wanted name starts in the name table, searched window by window (the
    /// windows overlap by a name's length). Every occurrence counts, not only those after a NUL: a
    /// linker may share a name's bytes with the tail of a longer one.</summary>
    private Dictionary<int, string> NameOffsets(IReadOnlyList<string> wanted, byte[] window)
    {
        var targets = wanted.Select(w => (Name: w, Bytes: Encoding.ASCII.GetBytes(w + "\0"))).ToArray();
        var overlap = targets.Max(t => t.Bytes.Length) - 1;
        var length = (long)(_cuOffset - FuncnameOffset);
        var offsets = new Dictionary<int, string>();
        for (long pos = 0; pos < length;)
        {
            var n = (int)Math.Min(Window, length - pos);
            var span = window.AsSpan(0, n);
            _elf.Read(Offset + (long)FuncnameOffset + pos, span, "pclntab function names");
            foreach (var (name, bytes) in targets)
            {
                for (var from = 0; from < n;)
                {
                    var i = span[from..].IndexOf(bytes);
                    if (i < 0) break;
                    offsets.TryAdd((int)(pos + from + i), name);
                    from += i + 1;
                }
            }
            if (pos + n >= length) break;
            pos += n - overlap;
        }
        return offsets;
    }

    private ulong FuncOff(byte[] functab, ulong i) => Magic == Magic116
        ? BinaryPrimitives.ReadUInt64LittleEndian(functab.AsSpan((int)(i * 16 + 8)))
        : BinaryPrimitives.ReadUInt32LittleEndian(functab.AsSpan((int)(i * 8 + 4)));
}
