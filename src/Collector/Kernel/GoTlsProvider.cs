using Collector.Events;
using Collector.Kernel.Go;
using Collector.Metrics;
using Microsoft.Extensions.Logging;

namespace Collector.Kernel;

/// <summary>Go's crypto/tls, compiled into each Go program: <c>(*Conn).Read</c> and <c>Write</c> are
/// found through the binary's own tables (<see cref="GoBinary"/>), stripped binaries too. Each gets a
/// probe at its entry and one at each of its RET instructions (bpf/go_tls.c), never a return probe.
///
/// The entry probes carry a cookie (see bpf/go_tls.c): the distance from the function to the
/// (*net.TCPConn, net.Conn) itab, so that the program checks the connection's type at run time, and
/// the fd chain's offsets from the per-version table. The compat program set (kernels before 5.15)
/// has no cookies: there the programs read with the offsets every supported version has, a binary
/// whose table differs is not probed, and the connection's type is not checked (the socket must
/// still be one the collector knows).
///
/// A Go binary that cannot be probed (Go before 1.17, an unknown table layout, a damaged file) is
/// counted in collector_go_binaries_total by its reason and logged once: its connections are
/// then unseen TLS, counted as such when they close.</summary>
public sealed class GoTlsProvider : ITlsProvider
{
    // what the compat programs read with (GO_DEFAULT_COOKIE in bpf/go_tls.c)
    private const int DefaultTlsConnConn = 0, DefaultTcpConnFd = 0, DefaultNetFdSysfd = 16;
    // the interface words: fixed by Go's runtime, fixed in the programs
    private const int IfaceItab = 0, IfaceData = 8;

    private readonly bool _cookies;
    private readonly CollectorMetrics _metrics;
    private readonly ILogger _log;

    public GoTlsProvider(bool attachCookies, CollectorMetrics metrics, ILogger log)
    {
        _cookies = attachCookies;
        _metrics = metrics;
        _log = log;
    }

    public CaptureSource Source => CaptureSources.GoTls;
    public IReadOnlyCollection<string> Functions => [];
    public IReadOnlyList<string> SystemLibraries => [];

    public IReadOnlyList<ProbePoint> Probes(ElfCandidate file)
    {
        var info = GoBinary.Analyze(file.OpenPath);
        switch (info.Status)
        {
            case GoBinaryStatus.NotGo or GoBinaryStatus.NoTls:
                return [];
            case GoBinaryStatus.Supported:
                break;
            default:
                return Unprobed(file, info, info.Status switch
                {
                    GoBinaryStatus.TooOld => "too_old",
                    GoBinaryStatus.Invalid => "invalid",
                    _ => "unsupported",
                }, info.Reason ?? "");
        }
        var offsets = info.FdOffsets!;
        if (offsets.IfaceItab != IfaceItab || offsets.IfaceData != IfaceData || offsets.TlsConnConn > 255 || offsets.TcpConnFd > 255 || offsets.NetFdSysfd > 255 ||
            (!_cookies && (offsets.TlsConnConn, offsets.TcpConnFd, offsets.NetFdSysfd) != (DefaultTlsConnConn, DefaultTcpConnFd, DefaultNetFdSysfd)))
            return Unprobed(file, info, "fd_offsets", $"the fd chain's offsets ({offsets.Source}) are not ones the programs read with");

        var points = new List<ProbePoint>();
        string itab;
        if (!_cookies) itab = "not checked: the kernel has no attach cookies (before 5.15); the socket must be a known one";
        else if (info.ConnItab is null) itab = $"not checked: {info.ConnItabProblem}";
        else itab = $"checked ({info.ConnItab.Source})";
        foreach (var (fn, enter, ret) in new[] { (info.Write, "go_tls_write_enter", "go_tls_write_return"), (info.Read, "go_tls_read_enter", "go_tls_read_return") })
        {
            if (fn is null) continue;
            // the returns first: a call must not begin with its entry seen and its return not
            foreach (var at in fn.ReturnOffsets)
                points.Add(new ProbePoint(ret, $"{fn.Name}+0x{at - fn.FileOffset:x}", at, ProbeKind.AtOffset,
                    _cookies ? ReturnCookie(fn, at, info.ConnItab, offsets) : 0));
            points.Add(new ProbePoint(enter, fn.Name, fn.FileOffset, ProbeKind.Entry, _cookies ? Cookie(fn, info.ConnItab, offsets) : 0));
        }
        _metrics.GoBinaries["probed"].Increment();
        var inProgress = !_cookies ? "not read (no attach cookies)"
            : info.Read?.ArgsSpilled == true ? "read at their return (arguments in their spill slots)"
            : "not read (the arguments are not in their spill slots)";
        _log.LogInformation("Go {Version} binary {Path}: crypto/tls from the {FunctionSource}, fd offsets from the {Offsets}, connection type {Itab}, calls in progress at attach {InProgress}",
            info.Version, file.DisplayPath, info.FunctionSource, offsets.Source, itab, inProgress);
        return points;
    }

    /// <summary>bits 0-31: itab − function (0: not checked); 32-39, 40-47, 48-55: the fd chain's offsets.
    /// An entry probe's; a RET probe's is <see cref="ReturnCookie"/>.</summary>
    internal static ulong Cookie(GoFunction fn, GoItab? itab, GoFdOffsets offsets)
    {
        long delta = itab is null ? 0 : (long)itab.Vaddr - (long)fn.Vaddr;
        if (delta is < int.MinValue or > int.MaxValue) delta = 0; // a layout no linker makes: not checked
        return (uint)(int)delta | (ulong)offsets.TlsConnConn << 32 | (ulong)offsets.TcpConnFd << 40 | (ulong)offsets.NetFdSysfd << 48;
    }

    /// <summary>bit 56 of a RET probe's cookie: the function's arguments are in their spill slots
    /// at its returns (<see cref="GoFunction.ArgsSpilled"/>).</summary>
    internal const ulong ArgsSpilledBit = 1UL << 56;

    /// <summary>A RET probe's cookie: as the entry's (<see cref="Cookie"/>), the itab's distance
    /// taken from this RET, and <see cref="ArgsSpilledBit"/> when the call's arguments can be
    /// read there (a call entered before the probes were attached).</summary>
    internal static ulong ReturnCookie(GoFunction fn, ulong returnFileOffset, GoItab? itab, GoFdOffsets offsets)
    {
        var at = fn with { Vaddr = fn.Vaddr + (returnFileOffset - fn.FileOffset) };
        return Cookie(at, itab, offsets) | (fn.ArgsSpilled ? ArgsSpilledBit : 0);
    }

    private IReadOnlyList<ProbePoint> Unprobed(ElfCandidate file, GoBinaryInfo info, string reason, string detail)
    {
        _metrics.GoBinaries[reason].Increment();
        _log.LogWarning("Go binary {Path} ({Version}) is not probed ({Reason}): {Detail}; its TLS connections are unseen",
            file.DisplayPath, info.Version ?? "version unknown", reason, detail);
        return [];
    }
}
