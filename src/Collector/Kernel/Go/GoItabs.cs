using System.Buffers;
using System.Buffers.Binary;

namespace Collector.Kernel.Go;

/// <summary>Finds the static itab the Go linker emits for (*net.TCPConn, net.Conn): the word a
/// <c>net.Conn</c> interface value holding a <c>*net.TCPConn</c> carries as its type. The probe on
/// <c>crypto/tls.(*Conn)</c> compares <c>tls.Conn.conn</c>'s itab with it before following the
/// pointers to the fd, so that a TLS connection over anything else (a wrapped or a Unix connection)
/// is not misread. The runtime registers the static itabs at start and reuses them for dynamic
/// conversions, so every TCP connection carries this one (seen in a live trace).
/// With symbols it is <c>go:itab.*net.TCPConn,net.Conn</c> (1.20+) or <c>go.itab.…</c>; without,
/// it is found the way the runtime itself finds its itabs: moduledata (located by its first two
/// words, the pcHeader's address and the function name table's) → itablinks → each itab's
/// interface and concrete type, named through moduledata.types.</summary>
internal static class GoItabs
{
    public static readonly string[] SymbolNames = ["go:itab.*net.TCPConn,net.Conn", "go.itab.*net.TCPConn,net.Conn"];
    private static ReadOnlySpan<byte> TcpConnPointer => "*net.TCPConn"u8;
    private static ReadOnlySpan<byte> NetConn => "net.Conn"u8;

    // Word indexes in runtime.moduledata (amd64) of text, types and itablinks.
    private readonly record struct ModuleLayout(int Text, int Types, int Itablinks, string Note);

    private static ModuleLayout? Layout(int minor) => minor switch
    {
        // types, etypes, then (1.18+) rodata and gofunc, textsectmap, typelinks, itablinks
        17 => new(22, 35, 43, "moduledata of go1.17 from runtime/symtab.go, not verified"),
        18 or 19 => new(22, 35, 45, "moduledata of go1.18-1.19"),
        // covctrs, ecovctrs were added after noptrbss in 1.20
        >= 20 and <= 23 => new(22, 37, 47, "moduledata of go1.20-1.23"),
        // checked below against the pcHeader's textStart and the slices' own consistency
        >= 24 => new(22, 37, 47, $"moduledata of go1.20-1.23 assumed for go1.{minor}"),
        _ => null,
    };

    // The runtime's abi.Type (rtype before 1.21) on 64-bit: tflag at 20, str (nameOff) at 40
    private const int TypeTflag = 20;
    private const int TypeStr = 40;
    private const int TypeHeader = 48;
    private const byte TflagExtraStar = 2;
    private const long MaxItabs = 1 << 20;

    /// <summary>The itab from <paramref name="symbols"/> (the file's symbols looked up for
    /// <see cref="SymbolNames"/>, among others), else from moduledata; a problem instead when neither works.</summary>
    public static (GoItab? Itab, string? Problem) Find(ElfImage elf, IReadOnlyDictionary<string, (ulong Value, ulong Size)> symbols,
        Func<GoPclnTab> pclntab, int minor)
    {
        foreach (var name in SymbolNames)
            if (symbols.TryGetValue(name, out var sym)) return (new GoItab(sym.Value, "symbol " + name), null);

        if (Layout(minor) is not { } layout) return (null, $"no moduledata layout for go1.{minor}");
        var tab = pclntab();
        var (moduledata, words) = FindModuleData(elf, tab, layout);
        if (moduledata == 0) return (null, $"moduledata not found ({layout.Note})");

        var types = words[layout.Types];
        var links = words[layout.Itablinks];
        var count = (int)words[layout.Itablinks + 1];
        var linkBytes = elf.ReadAt(links, (long)count * 8, MaxItabs * 8, "moduledata.itablinks");
        // An interface's name is read once per distinct interface, a concrete type's only when its
        // itab's interface is net.Conn: one small read per itab and a few per name, where naming
        // every itab's type would read the whole type data (12 MB in Prometheus).
        var isNetConn = new Dictionary<ulong, bool>();
        Span<byte> itab = stackalloc byte[16];
        for (var k = 0; k < count; k++)
        {
            var itabVaddr = BinaryPrimitives.ReadUInt64LittleEndian(linkBytes.AsSpan(k * 8));
            elf.Read(elf.RequireFileOffset(itabVaddr, 16, "itab"), itab, "itab");
            var inter = BinaryPrimitives.ReadUInt64LittleEndian(itab);
            if (!isNetConn.TryGetValue(inter, out var match))
                isNetConn[inter] = match = NameIs(elf, types, inter, NetConn);
            if (match && NameIs(elf, types, BinaryPrimitives.ReadUInt64LittleEndian(itab[8..]), TcpConnPointer))
                return (new GoItab(itabVaddr, $"itablinks of moduledata at 0x{moduledata:x} ({layout.Note})"), null);
        }
        return (null, $"no (*net.TCPConn, net.Conn) among the {count} itabs of moduledata at 0x{moduledata:x} ({layout.Note})");
    }

    /// <summary>moduledata's address and its first words, or 0 when no candidate checks out. The
    /// pair (pcHeader, funcnametab) is searched 8-aligned in .noptrdata (where both Go's linker and
    /// an external one put runtime.firstmoduledata), then in every writable segment.</summary>
    private static (ulong Vaddr, ulong[] Words) FindModuleData(ElfImage elf, GoPclnTab tab, ModuleLayout layout)
    {
        Span<byte> pattern = stackalloc byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(pattern, tab.Vaddr);
        BinaryPrimitives.WriteUInt64LittleEndian(pattern[8..], tab.Vaddr + tab.FuncnameOffset);
        var wordCount = layout.Itablinks + 3;
        var places = new List<(long Offset, long Size)>();
        if (elf.FindSection(".noptrdata") is { HasFileBytes: true } nd) places.Add((nd.Offset, nd.Size));
        foreach (var s in elf.Loads)
            if ((s.Flags & ElfImage.PfW) != 0) places.Add((s.Offset, (long)s.FileSize));

        const int Chunk = 1 << 20;
        var buffer = ArrayPool<byte>.Shared.Rent(Chunk);
        try
        {
            foreach (var (start, size) in places)
            {
                for (long pos = 0; pos < size; pos += Chunk - 16)
                {
                    var n = (int)Math.Min(Chunk, size - pos);
                    if (n < 16) break;
                    var buf = buffer.AsSpan(0, n);
                    elf.Read(start + pos, buf, "moduledata search");
                    for (var from = 0; from + 16 <= n;)
                    {
                        var i = buf[from..].IndexOf(pattern);
                        if (i < 0) break;
                        var at = start + pos + from + i;
                        from += i + 1;
                        if (at % 8 != 0 || at > elf.Length - wordCount * 8) continue;
                        var raw = elf.Read(at, wordCount * 8, 1024, "moduledata");
                        var words = new ulong[wordCount];
                        for (var w = 0; w < wordCount; w++) words[w] = BinaryPrimitives.ReadUInt64LittleEndian(raw.AsSpan(w * 8));
                        if (Plausible(words, tab, layout) && elf.SegmentOfOffset(at) is { } seg)
                            return (seg.Vaddr + (ulong)(at - seg.Offset), words);
                    }
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        return (0, []);
    }

    /// <summary>A layout guessed wrong, or sixteen bytes matching by chance, fail these: the text
    /// word equals the pcHeader's textStart, types ≤ etypes, and itablinks' length equals its capacity.</summary>
    private static bool Plausible(ulong[] w, GoPclnTab tab, ModuleLayout layout)
    {
        if (tab.TextStart != 0 && w[layout.Text] != tab.TextStart) return false;
        var types = w[layout.Types];
        var etypes = w[layout.Types + 1];
        if (types == 0 || etypes < types || etypes - types > ElfImage.MaxTableBytes) return false;
        var len = w[layout.Itablinks + 1];
        var cap = w[layout.Itablinks + 2];
        return w[layout.Itablinks] != 0 && len == cap && len > 0 && len <= MaxItabs;
    }

    /// <summary>Whether the type at <paramref name="type"/> is named <paramref name="expected"/>. A
    /// name is a flags byte, a uvarint length and the bytes (Go 1.17+), at types + str; with
    /// tflagExtraStar the stored name has one '*' more than the type's.</summary>
    private static bool NameIs(ElfImage elf, ulong types, ulong type, ReadOnlySpan<byte> expected)
    {
        Span<byte> header = stackalloc byte[TypeHeader];
        elf.Read(elf.RequireFileOffset(type, TypeHeader, "type"), header, "type");
        var extraStar = (header[TypeTflag] & TflagExtraStar) != 0 ? 1 : 0;
        var str = BinaryPrimitives.ReadInt32LittleEndian(header[TypeStr..]);
        if (str < 0) return false;
        // flags, then a one-byte uvarint for any name under 128 bytes, which ours are
        var want = expected.Length + extraStar;
        Span<byte> name = stackalloc byte[2 + want];
        elf.Read(elf.RequireFileOffset(types + (ulong)str, (ulong)name.Length, "type name"), name, "type name");
        if (name[1] != want) return false;
        var stored = name[2..];
        return (extraStar == 0 || stored[0] == (byte)'*') && stored[extraStar..].SequenceEqual(expected);
    }
}
