using Collector.Tests.Support;

namespace Collector.Tests.Kernel;

/// <summary>Issue 12: a kernel below the supported floor is refused at start with one line naming
/// the kernel, what it lacks and the floor, and exit status 4; never a verifier dump. The features
/// are taken away with BPF_FEATURES_OFF, the way such a kernel would lack them.</summary>
[Collection("kernel")]
public sealed class KernelFloorTests
{
    [Theory]
    [InlineData("ring_buffer", "the BPF ring buffer (BPF_MAP_TYPE_RINGBUF, Linux 5.8)")]
    [InlineData("btf", "BTF at /sys/kernel/btf/vmlinux")]
    public void Below_the_floor_start_up_stops_with_one_line_and_status_4(string featureOff, string missing)
    {
        var (code, stdout, stderr) = Shell.Run(Repo.CollectorBinary, "", TimeSpan.FromSeconds(60), env: new Dictionary<string, string>
        {
            ["BPF_FEATURES_OFF"] = featureOff,
            ["TRACE_COMMS"] = "curl",
            ["METRICS_BIND"] = $"127.0.0.1:{Repo.FreePort()}",
        });
        Assert.Equal(4, code);
        Assert.Equal("", stdout);
        var release = File.ReadAllText("/proc/sys/kernel/osrelease").Trim();
        var line = Assert.Single(stderr.Split('\n'), l => l.Contains("floor"));
        Assert.Contains($"kernel {release} is below the supported floor: it lacks {missing}", line);
        Assert.Contains("the collector needs Linux 5.8 with BTF", line);
        // refused before anything was loaded: no libbpf messages, no verifier log
        Assert.DoesNotContain("libbpf", stderr);
        Assert.DoesNotContain("verifier", stderr);
        Assert.DoesNotContain("eBPF programs:", stderr);
    }
}
