using Collector.Tests.Support;

namespace Collector.Tests.Kernel;

/// <summary>AKTO_MEM_THRESH_RESTART: past it the collector logs why and exits with status 3, so that
/// the DaemonSet restarts it. The built binary, as deployed (it loads its probes first).</summary>
[Collection("kernel")]
public sealed class MemoryThresholdTests
{
    [Fact]
    public void Past_the_memory_threshold_the_collector_exits_with_status_3_and_says_why()
    {
        var (code, _, err) = Shell.Run(Repo.CollectorBinary, "", TimeSpan.FromSeconds(90), env: new Dictionary<string, string>
        {
            ["AKTO_MEM_THRESH_RESTART"] = "1", // 1 MB: any running collector is past it
            ["TRACE_COMMS"] = "no-such-comm",
            ["METRICS_BIND"] = $"127.0.0.1:{Repo.FreePort()}",
        });
        Assert.True(code == 3, $"exit status {code}:\n{err}");
        // one line says why (the start-up banner also names the setting, among all the others)
        var line = Assert.Single(err.Split('\n'), l => l.Contains("exiting with status 3"));
        Assert.Contains("over AKTO_MEM_THRESH_RESTART (1 MB)", line);
    }
}
