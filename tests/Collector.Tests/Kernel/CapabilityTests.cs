using Collector.Tests.Operations;
using Collector.Tests.Support;
using Xunit.Abstractions;

namespace Collector.Tests.Kernel;

/// <summary>The built collector run with only the capabilities the README's table lists (the
/// DaemonSet's and the systemd unit's, checked equal by ManifestTests): it must attach everything
/// and capture plaintext and TLS traffic.</summary>
[Collection("kernel")]
public sealed class CapabilityTests(ITestOutputHelper output)
{
    /// <summary>Capability numbers from linux/capability.h (a stable ABI).</summary>
    private static readonly Dictionary<string, int> Numbers = new()
    {
        ["CHOWN"] = 0, ["DAC_OVERRIDE"] = 1, ["DAC_READ_SEARCH"] = 2, ["FOWNER"] = 3, ["KILL"] = 5, ["SETGID"] = 6, ["SETUID"] = 7,
        ["NET_BIND_SERVICE"] = 10, ["NET_ADMIN"] = 12, ["NET_RAW"] = 13, ["IPC_LOCK"] = 14, ["SYS_CHROOT"] = 18, ["SYS_PTRACE"] = 19,
        ["SYS_ADMIN"] = 21, ["SYS_NICE"] = 23, ["SYS_RESOURCE"] = 24, ["SYSLOG"] = 34, ["PERFMON"] = 38, ["BPF"] = 39, ["CHECKPOINT_RESTORE"] = 40,
    };

    private static ulong Mask(IEnumerable<string> caps) => caps.Aggregate(0UL, (m, c) => m | (1UL << Numbers[c]));

    private static ulong StatusMask(int pid, string field) =>
        Convert.ToUInt64(File.ReadLines($"/proc/{pid}/status").Single(l => l.StartsWith(field + ":"))[(field.Length + 1)..].Trim(), 16);

    /// <summary>The README's capabilities this machine can grant (its own bounding set may lack some).</summary>
    private List<string> Grantable(IEnumerable<string> caps)
    {
        var bounding = StatusMask(Environment.ProcessId, "CapBnd");
        var list = caps.ToList();
        foreach (var c in list) Assert.True(Numbers.ContainsKey(c), $"add {c} to the capability numbers of this test");
        var grantable = list.Where(c => (bounding & (1UL << Numbers[c])) != 0).ToList();
        foreach (var c in list.Except(grantable))
            output.WriteLine($"CAP_{c} is listed in the README but not in this machine's bounding set: run without it");
        return grantable;
    }

    private static IReadOnlyList<string> Setpriv(IEnumerable<string> caps) =>
        ["setpriv", "--bounding-set=-all" + string.Concat(caps.Select(c => ",+" + c.ToLowerInvariant())), "--inh-caps=-all", "--"];

    [Fact]
    public async Task With_only_the_readme_capabilities_it_attaches_everything_and_captures_plaintext_and_tls()
    {
        var caps = Grantable(Readme.Capabilities());
        using var nginx = new Nginx();
        File.WriteAllText(Path.Combine(nginx.Www, "caps.txt"), "caps\n");
        await using var collector = await CollectorProcess.StartAsync(
            new Dictionary<string, string> { ["TRACE_COMMS"] = "curl,nginx" }, prefix: Setpriv(caps));

        Assert.Equal(Mask(caps), StatusMask(collector.Pid, "CapEff"));
        Assert.Equal(Mask(caps), StatusMask(collector.Pid, "CapBnd"));
        Assert.Equal(0, await collector.MetricAsync("collector_probe_attach_failures_total"));
        Assert.True(await collector.MetricAsync("collector_tracepoints_attached") >= 20);
        Assert.Equal(-10, ReaderPriorityTests.ReaderNice(collector.Pid));

        foreach (var (scheme, port) in new[] { ("http", nginx.PlainPort), ("https", nginx.TlsPort) })
        {
            var path = $"/caps.txt?caps={scheme}-{Guid.NewGuid():N}";
            Assert.Equal("caps\n", Shell.Check("curl", $"-sk --fail {scheme}://127.0.0.1:{port}{path}"));
            var found = await collector.WaitForAsync(m => m.GetProperty("path").GetString() == path, 2);
            Assert.Equal(["1", "2"], found.Select(m => m.GetProperty("direction").GetString()).Order());
            Assert.All(found, m => Assert.Equal("caps\n", m.GetProperty("responsePayload").GetString()));
        }
        Assert.Equal(0, await collector.StopAsync(TimeSpan.FromSeconds(30)));
    }

    /// <summary>The README's reason for SYS_ADMIN: this kernel refuses uprobe perf events with
    /// CAP_PERFMON alone (perf_uprobe_event_init checks CAP_SYS_ADMIN). If this starts to pass
    /// without SYS_ADMIN, the README and the DaemonSet can drop it.</summary>
    [Fact]
    public async Task Without_SYS_ADMIN_the_kernel_refuses_the_tls_uprobes()
    {
        var caps = Grantable(Readme.Capabilities()).Where(c => c != "SYS_ADMIN").ToList();
        await using var collector = await CollectorProcess.StartAsync(
            new Dictionary<string, string> { ["TRACE_COMMS"] = "curl" }, prefix: Setpriv(caps));
        Assert.True(await collector.MetricAsync("collector_tracepoints_attached") >= 20);
        Assert.True(await collector.MetricAsync("collector_probe_attach_failures_total") > 0);
        Assert.Contains(collector.LogLines, l => l.Contains("could not attach") && l.Contains("Permission denied"));
    }

    /// <summary>SYS_NICE is what lets the reader run ahead: without it the collector says so and
    /// captures at the default priority.</summary>
    [Fact]
    public async Task Without_SYS_NICE_the_reader_runs_at_the_default_priority_and_the_log_says_why()
    {
        var caps = Grantable(Readme.Capabilities()).Where(c => c != "SYS_NICE").ToList();
        using var nginx = new Nginx();
        File.WriteAllText(Path.Combine(nginx.Www, "nice.txt"), "nice\n");
        await using var collector = await CollectorProcess.StartAsync(
            new Dictionary<string, string> { ["TRACE_COMMS"] = "curl,nginx" }, prefix: Setpriv(caps));
        Assert.Equal(0, ReaderPriorityTests.ReaderNice(collector.Pid));
        Assert.Contains(collector.LogLines, l => l.Contains("CAPTURE_NICE=-10 not applied") && l.Contains("CAP_SYS_NICE"));
        var path = $"/nice.txt?{Guid.NewGuid():N}";
        Shell.Check("curl", $"-s --fail http://127.0.0.1:{nginx.PlainPort}{path}");
        Assert.Equal(2, (await collector.WaitForAsync(m => m.GetProperty("path").GetString() == path, 2)).Count);
        Assert.Equal(0, await collector.StopAsync(TimeSpan.FromSeconds(30)));
    }

    /// <summary>Without the eBPF capabilities every feature probe fails alike: the collector says that
    /// the bpf() call is refused, not that the kernel is below the floor, and exits with status 4.</summary>
    [Fact]
    public void Without_the_eBPF_capabilities_start_up_says_bpf_is_refused()
    {
        var caps = Grantable(Readme.Capabilities()).Where(c => c is not ("BPF" or "SYS_ADMIN" or "PERFMON")).ToList();
        var (code, stdout, stderr) = Shell.Run("setpriv",
            string.Join(" ", Setpriv(caps).Skip(1)) + " " + Repo.CollectorBinary, TimeSpan.FromSeconds(60),
            env: new Dictionary<string, string> { ["TRACE_COMMS"] = "curl", ["METRICS_BIND"] = $"127.0.0.1:{Repo.FreePort()}" });
        Assert.Equal(4, code);
        Assert.Equal("", stdout);
        var line = Assert.Single(stderr.Split('\n'), l => l.Contains("cannot start kernel capture"));
        Assert.Contains("the bpf() system call is refused", line);
        Assert.DoesNotContain("floor", stderr);
    }
}
