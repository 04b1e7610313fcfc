using Collector.Events;
using Collector.Metrics;
using Microsoft.Extensions.Logging;

namespace Collector.Kernel;

/// <summary>How a uprobe sits at its file offset.</summary>
public enum ProbeKind
{
    /// <summary>A uprobe at a function's first instruction: its arguments are in their registers.</summary>
    Entry,
    /// <summary>A uretprobe: the kernel swaps the return address on the stack at entry. Never on
    /// Go code, whose goroutine stacks move.</summary>
    Return,
    /// <summary>A uprobe at any instruction of a function (for Go: each RET, in place of a return probe).</summary>
    AtOffset,
}

/// <summary>One uprobe to attach in a file: the program (its name in bpf/, without the compat
/// suffix), the place (a function name, or name+offset, for logs), the file offset, and a value
/// the program reads with bpf_get_attach_cookie (0: none). A cookie needs kernel 5.15 (BPF perf
/// links); libbpf refuses a non-zero one on an older kernel, where the program set is compat.</summary>
public readonly record struct ProbePoint(string Program, string Site, ulong FileOffset, ProbeKind Kind, ulong Cookie = 0);

/// <summary>An executable file mapped by some process: the path to open it by (through
/// /proc/PID/root, the process's own mount namespace), its name for logs and metrics, and the
/// functions its symbol tables define among those the providers asked for, read once for all.</summary>
public sealed record ElfCandidate(string OpenPath, string DisplayPath, IReadOnlyDictionary<string, ulong> Functions);

/// <summary>A source of TLS plaintext in user space code (a library, or a language runtime
/// compiled into programs): it looks at an ELF file and answers which probes to attach where.
/// <see cref="TlsProbes"/> asks every provider about every new file.</summary>
public interface ITlsProvider
{
    /// <summary>The source its programs put in their data events (logs name the provider by its label).</summary>
    CaptureSource Source { get; }

    /// <summary>Functions to look up in a file's symbol tables for this provider (an empty set
    /// when it finds its functions another way, as Go's runtime tables would).</summary>
    IReadOnlyCollection<string> Functions { get; }

    /// <summary>File name patterns of its shared libraries, probed in the system library
    /// directories at start, so that a short-lived process's first call is seen before any scan
    /// finds the library mapped.</summary>
    IReadOnlyList<string> SystemLibraries { get; }

    /// <summary>The probes to attach in this file, in the order to attach them: a function's
    /// return probes before its entry probe, so that no call starts with its entry seen and its
    /// return not. Empty when the file does not carry this source. May read the file
    /// (<see cref="ElfCandidate.OpenPath"/>): IOException and UnauthorizedAccessException say it
    /// could not be read, ArgumentException that it is not what it seemed.</summary>
    IReadOnlyList<ProbePoint> Probes(ElfCandidate file);
}

/// <summary>A TLS library found by the functions it exports: each function it defines gets the
/// programs listed for it, at the function's entry or return.</summary>
public abstract class SymbolTlsProvider : ITlsProvider
{
    private readonly (string Function, string Program, ProbeKind Kind)[] _probes;

    protected SymbolTlsProvider(CaptureSource source, IReadOnlyList<string> systemLibraries,
        (string Function, string Program, ProbeKind Kind)[] probes)
    {
        Source = source;
        SystemLibraries = systemLibraries;
        _probes = probes;
        Functions = probes.Select(p => p.Function).ToHashSet(StringComparer.Ordinal);
    }

    public CaptureSource Source { get; }
    public IReadOnlyCollection<string> Functions { get; }
    public IReadOnlyList<string> SystemLibraries { get; }

    public IReadOnlyList<ProbePoint> Probes(ElfCandidate file)
    {
        var points = new List<ProbePoint>();
        foreach (var (function, program, kind) in _probes)
            if (file.Functions.TryGetValue(function, out var offset))
                points.Add(new ProbePoint(program, function, offset, kind));
        return points;
    }
}

public static class TlsProviders
{
    /// <summary>The C libraries' providers, in the order their probes are attached.</summary>
    public static IReadOnlyList<ITlsProvider> Default { get; } = [new OpenSslProvider(), new GnuTlsProvider()];

    /// <summary>The providers the collector runs with on this kernel: the libraries', and Go's
    /// (whose entry probes carry attach cookies when the current program set runs).</summary>
    public static IReadOnlyList<ITlsProvider> For(KernelCapture kernel, CollectorMetrics metrics, ILogger log) =>
        [.. Default, new GoTlsProvider(kernel.Features.Programs == ProgramSet.Current, metrics, log)];
}
