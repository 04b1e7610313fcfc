using Collector.Tests.Support;

namespace Collector.Tests.Kernel;

/// <summary>The ring buffer's reader runs at CAPTURE_NICE (default -10), every other thread at the
/// process's own nice value once the collector is ready: read back from the kernel's view of the
/// running collector's threads, and the log says so.</summary>
[Collection("kernel")]
public sealed class ReaderPriorityTests
{
    [Theory]
    [InlineData(null, -10, 0)]
    [InlineData("5", 5, 0)]
    [InlineData("0", 0, 0)]
    [InlineData(null, -10, 3)] // started with nice 3: the others return to 3 after start-up
    public async Task The_reader_thread_runs_at_the_configured_nice_value_and_the_others_at_the_process_own(string? setting, int expected, int processNice)
    {
        var env = new Dictionary<string, string> { ["TRACE_COMMS"] = "curl" };
        if (setting is not null) env["CAPTURE_NICE"] = setting;
        await using var collector = await CollectorProcess.StartAsync(env, prefix: processNice == 0 ? null : ["nice", "-n", processNice.ToString()]);

        var threads = ThreadNice(collector.Pid);
        var reader = Assert.Single(threads, t => t.Name == "ring-buffer");
        Assert.Equal(expected, reader.Nice);
        // only that thread: the JIT, librdkafka and the web server keep the default
        Assert.All(threads.Where(t => t.Name != "ring-buffer"), t => Assert.Equal(processNice, t.Nice));
        if (expected != 0)
            Assert.Contains(collector.LogLines, l => l.Contains($"runs at nice {expected} (CAPTURE_NICE)"));
        else
            Assert.DoesNotContain(collector.LogLines, l => l.Contains("ring buffer reader:"));
        Assert.Equal(0, await collector.StopAsync(TimeSpan.FromSeconds(30)));
    }

    /// <summary>Each thread of the process: its name and nice value, as the kernel has them.</summary>
    public static List<(string Name, int Nice)> ThreadNice(int pid) => Directory.GetDirectories($"/proc/{pid}/task")
        .Select(t => (File.ReadAllText(Path.Combine(t, "comm")).TrimEnd('\n'), Collector.Lifecycle.CapturePriority.NiceOf(Path.Combine(t, "stat"))))
        .ToList();

    /// <summary>The ring buffer reader's nice value.</summary>
    public static int ReaderNice(int pid) => ThreadNice(pid).Single(t => t.Name == "ring-buffer").Nice;
}
