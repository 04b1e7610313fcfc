using Collector.Kernel;
using Collector.Kernel.Go;
using Collector.Metrics;
using Collector.Tests.Support;
using Microsoft.Extensions.Logging.Abstractions;

namespace Collector.Tests.Kernel;

/// <summary>What the Go provider asks to attach in a Go binary, without the kernel: the RETs
/// before the entry, the cookie the programs decode, and the binaries it refuses.</summary>
public sealed class GoTlsProviderTests
{
    private static ElfCandidate File(string path) => new(path, path, new Dictionary<string, ulong>());

    [Fact]
    public void Each_function_gets_a_probe_at_every_ret_then_one_at_its_entry_with_its_cookie()
    {
        var path = GoPeers.TlsPeer("1.23", "piestrip");
        var info = GoBinary.Analyze(path);
        Assert.Equal(GoBinaryStatus.Supported, info.Status);
        var metrics = new CollectorMetrics();
        var points = new GoTlsProvider(attachCookies: true, metrics, NullLogger.Instance).Probes(File(path));
        foreach (var (fn, enter, ret) in new[] { (info.Write!, "go_tls_write_enter", "go_tls_write_return"), (info.Read!, "go_tls_read_enter", "go_tls_read_return") })
        {
            var mine = points.Where(p => p.Program == enter || p.Program == ret).ToList();
            Assert.Equal(fn.ReturnOffsets.Count + 1, mine.Count);
            Assert.Equal(fn.ReturnOffsets, mine.Take(fn.ReturnOffsets.Count).Select(p => p.FileOffset));
            Assert.All(mine.Take(fn.ReturnOffsets.Count), p => Assert.Equal((ret, ProbeKind.AtOffset, 0UL), (p.Program, p.Kind, p.Cookie)));
            var entry = mine[^1];
            Assert.Equal((enter, ProbeKind.Entry, fn.FileOffset), (entry.Program, entry.Kind, entry.FileOffset));
            // what bpf/go_tls.c reads out of it
            Assert.Equal((long)info.ConnItab!.Vaddr - (long)fn.Vaddr, (long)(int)(uint)entry.Cookie);
            Assert.Equal((ulong)info.FdOffsets!.TlsConnConn, entry.Cookie >> 32 & 0xff);
            Assert.Equal((ulong)info.FdOffsets.TcpConnFd, entry.Cookie >> 40 & 0xff);
            Assert.Equal((ulong)info.FdOffsets.NetFdSysfd, entry.Cookie >> 48 & 0xff);
        }
        Assert.Equal(1, metrics.GoBinaries["probed"].Value);
    }

    [Fact]
    public void Without_attach_cookies_the_entry_probes_carry_none()
    {
        var points = new GoTlsProvider(attachCookies: false, new CollectorMetrics(), NullLogger.Instance).Probes(File(GoPeers.TlsPeer("1.21", "strip")));
        Assert.NotEmpty(points);
        Assert.All(points, p => Assert.Equal(0UL, p.Cookie));
        Assert.Equal(2, points.Count(p => p.Kind == ProbeKind.Entry));
    }

    [Fact]
    public void Go_before_1_17_and_files_that_are_not_go_get_no_probes()
    {
        var metrics = new CollectorMetrics();
        var provider = new GoTlsProvider(attachCookies: true, metrics, NullLogger.Instance);
        Assert.Empty(provider.Probes(File(Path.Combine(GoPeers.EnsureBuilt(), "go" + GoPeers.TooOldToolchain, "go-tls-default"))));
        Assert.Equal(1, metrics.GoBinaries["too_old"].Value);
        Assert.Empty(provider.Probes(File("/usr/bin/curl")));
        Assert.Equal(0, metrics.GoBinaries["probed"].Value);
    }
}
