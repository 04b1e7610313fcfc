namespace Collector.Kernel.Go;

public enum GoBinaryStatus
{
    /// <summary>Not a Go program (or not an ELF64 little-endian file); the reason says which.</summary>
    NotGo,
    /// <summary>Go 1.17+ on amd64 with crypto/tls's Conn.Read and/or Write found: probe it.</summary>
    Supported,
    /// <summary>A Go program this analysis reads, without crypto/tls's Conn (nothing to capture).</summary>
    NoTls,
    /// <summary>Go before 1.17: arguments on the stack, not in registers; the version says which.</summary>
    TooOld,
    /// <summary>Go, but not what the probes handle: another architecture, an unknown table format, no
    /// build info, a function leaving through a jump.</summary>
    Unsupported,
    /// <summary>The file is damaged or not what its headers claim; the reason says where.</summary>
    Invalid,
}

/// <summary>A function to probe. <paramref name="FileOffset"/> is the uprobe offset of its entry
/// (address − PT_LOAD.p_vaddr + p_offset); <paramref name="ReturnOffsets"/> are the uprobe offsets
/// of its RET instructions (a RET's address is Vaddr + (offset − FileOffset)). The size is the
/// symbol's when the symbol table gave the function, else up to the next function (int3 padding
/// included).</summary>
public sealed record GoFunction(string Name, ulong Vaddr, ulong FileOffset, ulong Size, IReadOnlyList<ulong> ReturnOffsets)
{
    /// <summary>The prologue stores the receiver and the slice argument (RAX, RBX, RCX) into their
    /// spill slots before any call: at each RET they are at RSP+8, +16, +24, so a call entered
    /// before the probes were attached can still be read at its return.</summary>
    public bool ArgsSpilled { get; init; }
}

/// <summary>The link-time address of the (*net.TCPConn, net.Conn) itab. A probe at a function's
/// address A sees it at run time at ip − A + Vaddr, whatever the process's load bias.</summary>
public sealed record GoItab(ulong Vaddr, string Source);

/// <summary>From a <c>*crypto/tls.Conn</c> c to its socket: the interface <c>c.conn</c> is at
/// c + TlsConnConn, its itab word at + IfaceItab and its data word (the <c>*net.TCPConn</c> when the
/// itab is <see cref="GoBinaryInfo.ConnItab"/>'s) at + IfaceData; the <c>*netFD</c> is at
/// tcpConn + TcpConnFd; the fd (int64, poll.FD.Sysfd) at netFD + NetFdSysfd. Source is for the log.</summary>
public sealed record GoFdOffsets(int TlsConnConn, int IfaceItab, int IfaceData, int TcpConnFd, int NetFdSysfd, string Source, bool Verified);

/// <summary>What <see cref="GoBinary.Analyze"/> found. Version is the build info's ("go1.23.5") when
/// the file has one; Reason says why the status is not Supported. When Supported, Read and/or Write
/// are set, and FdOffsets; ConnItab is null when it could not be found, with ConnItabProblem saying
/// why (the probes then cannot check the connection's type).</summary>
public sealed record GoBinaryInfo(GoBinaryStatus Status, string? Version, string? Reason)
{
    public GoFunction? Read { get; init; }
    public GoFunction? Write { get; init; }
    /// <summary>"symbol table" or "pclntab (layout, where found)".</summary>
    public string? FunctionSource { get; init; }
    public GoItab? ConnItab { get; init; }
    public string? ConnItabProblem { get; init; }
    public GoFdOffsets? FdOffsets { get; init; }
}

/// <summary>Reads a Go executable (or Go shared object) for what the crypto/tls probes need, from
/// the file alone: the Go version (build info), the entries and RET instructions of
/// <c>crypto/tls.(*Conn).Read</c> and <c>Write</c> (symbol table when present, else Go's pclntab, so
/// stripped binaries too), the (*net.TCPConn, net.Conn) itab, and the struct offsets to the fd.
/// It runs for every executable on the node: a file that is not Go costs the ELF and section headers
/// and nothing more.</summary>
public static class GoBinary
{
    public const string ReadFunction = "crypto/tls.(*Conn).Read";
    public const string WriteFunction = "crypto/tls.(*Conn).Write";
    public const int MinMinorVersion = 17;

    private static readonly string[] GoSections = [".gopclntab", ".data.rel.ro.gopclntab", ".gosymtab", ".note.go.buildid"];

    /// <summary>The analysis of the ELF file at <paramref name="path"/>. Whatever the file holds, the
    /// answer is a status and a reason, not an exception; only failing to open or read it (gone,
    /// no permission) throws, as <see cref="IOException"/> or <see cref="UnauthorizedAccessException"/>.</summary>
    public static GoBinaryInfo Analyze(string path)
    {
        string? version = null;
        try
        {
            using var elf = ElfImage.Open(path, out var notElf);
            if (elf is null) return new GoBinaryInfo(GoBinaryStatus.NotGo, null, notElf);
            version = GoBuildInfo.ReadVersion(elf);
            if (version is null)
            {
                return elf.Sections.Any(s => GoSections.Contains(s.Name))
                    ? new GoBinaryInfo(GoBinaryStatus.Unsupported, null, "a Go binary without build info (built before Go 1.13, or the section was removed)")
                    : new GoBinaryInfo(GoBinaryStatus.NotGo, null, "no Go build info");
            }
            return AnalyzeGo(elf, version);
        }
        catch (GoAnalysisException e)
        {
            return new GoBinaryInfo(e.Status, version, e.Message);
        }
    }

    private static GoBinaryInfo AnalyzeGo(ElfImage elf, string version)
    {
        var minor = GoBuildInfo.MinorVersion(version)
            ?? throw new GoAnalysisException(GoBinaryStatus.Unsupported, $"Go version \"{version}\" names no Go 1 release");
        if (elf.Machine != ElfImage.MachineX86_64)
        {
            var arch = elf.Machine == ElfImage.MachineAarch64 ? "arm64" : $"ELF machine {elf.Machine}";
            throw new GoAnalysisException(GoBinaryStatus.Unsupported, $"{arch}: only amd64 Go binaries are probed");
        }
        if (minor < MinMinorVersion)
            return new GoBinaryInfo(GoBinaryStatus.TooOld, version,
                $"{version} passes arguments on the stack; the probes read Go 1.17+'s register ABI");

        GoPclnTab? tab = null;
        GoPclnTab Pclntab() => tab ??= LocateFor(elf, minor, version);

        var symbols = elf.FindSymbols([ReadFunction, WriteFunction, .. GoItabs.SymbolNames]);
        var functions = new Dictionary<string, (ulong Entry, ulong Size)>(StringComparer.Ordinal);
        string source;
        foreach (var name in new[] { ReadFunction, WriteFunction })
            if (symbols.TryGetValue(name, out var s)) functions[name] = (s.Value, s.Size);
        if (functions.Count > 0)
        {
            source = "symbol table";
        }
        else
        {
            functions = Pclntab().Find([ReadFunction, WriteFunction]);
            source = $"pclntab ({Pclntab().LayoutName}, {Pclntab().FoundIn})";
        }
        if (functions.Count == 0)
            return new GoBinaryInfo(GoBinaryStatus.NoTls, version, "no crypto/tls.(*Conn).Read or Write: the program makes no TLS connections");

        GoFunction? Decoded(string name) =>
            functions.TryGetValue(name, out var f) ? GoFunctionReturns.Decode(elf, name, f.Entry, f.Size) : null;
        var read = Decoded(ReadFunction);
        var write = Decoded(WriteFunction);

        GoItab? itab;
        string? problem;
        try
        {
            (itab, problem) = GoItabs.Find(elf, symbols, Pclntab, minor);
        }
        catch (GoAnalysisException e)
        {
            // the functions are sound; only the type check is lost, and the answer says why
            (itab, problem) = (null, e.Message);
        }

        return new GoBinaryInfo(GoBinaryStatus.Supported, version, null)
        {
            Read = read,
            Write = write,
            FunctionSource = source,
            ConnItab = itab,
            ConnItabProblem = problem,
            FdOffsets = GoStructOffsets.For(minor),
        };
    }

    /// <summary>The pclntab, after checking its format is the one this Go version writes: a binary
    /// whose build info and tables disagree is not read by guesswork.</summary>
    private static GoPclnTab LocateFor(ElfImage elf, int minor, string version)
    {
        var tab = GoPclnTab.Locate(elf);
        var expected = minor switch
        {
            <= 15 => GoPclnTab.Magic12,
            16 or 17 => GoPclnTab.Magic116,
            18 or 19 => GoPclnTab.Magic118,
            _ => GoPclnTab.Magic120,
        };
        if (tab.Magic != expected)
            throw GoAnalysisException.Invalid($"pclntab format {tab.LayoutName} (magic 0x{tab.Magic:X8}) does not match build info's {version}");
        return tab;
    }
}
