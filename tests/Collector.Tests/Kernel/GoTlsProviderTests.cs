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
            // each RET's cookie: the itab from that RET, the same offsets, and the arguments'
            // spill slots readable there (a call entered before the probes were attached)
            if (fn == info.Read) Assert.True(fn.ArgsSpilled, $"{fn.Name}: the prologue's spills were not found");
            foreach (var p in mine.Take(fn.ReturnOffsets.Count))
            {
                Assert.Equal((ret, ProbeKind.AtOffset), (p.Program, p.Kind));
                var retVaddr = fn.Vaddr + (p.FileOffset - fn.FileOffset);
                Assert.Equal((long)info.ConnItab!.Vaddr - (long)retVaddr, (long)(int)(uint)p.Cookie);
                Assert.Equal(fn.ArgsSpilled ? GoTlsProvider.ArgsSpilledBit : 0, p.Cookie & GoTlsProvider.ArgsSpilledBit);
                Assert.Equal((ulong)info.FdOffsets!.NetFdSysfd, p.Cookie >> 48 & 0xff);
            }
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

    [Theory]
    [MemberData(nameof(EveryBuild))]
    public void Every_toolchain_keeps_reads_arguments_in_their_spill_slots(string version, string form)
    {
        // what lets a Read that was parked when the collector started be read at its return (a
        // Write's prologue keeps b in registers: one in progress at attach is counted, not read)
        var info = GoBinary.Analyze(GoPeers.TlsPeer(version, form));
        Assert.True(info.Read!.ArgsSpilled, $"go{version} {form}: Read");
    }

    public static IEnumerable<object[]> EveryBuild() => GoPeers.Builds().Select(b => new object[] { b.Version, b.Form });

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
