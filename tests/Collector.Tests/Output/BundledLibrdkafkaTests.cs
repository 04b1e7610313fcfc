using Collector.Output;
using Collector.Tests.Support;

namespace Collector.Tests.Output;

/// <summary>The collector and the tests' mock cluster run on the librdkafka of the NuGet package
/// librdkafka.redist, never on a library the host has (Debian's librdkafka 2.0.2 is on this
/// machine for kcat): the same library in the image as in the tests.</summary>
[Collection("kernel")]
public sealed class BundledLibrdkafkaTests
{
    /// <summary>Debian's librdkafka1, there for kcat.</summary>
    private const string DebianLibrary = "/usr/lib/x86_64-linux-gnu/librdkafka.so.1";

    private static IReadOnlyList<string> MappedRdkafka(int pid) =>
        File.ReadAllLines($"/proc/{pid}/maps").Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Where(f => f.Length >= 6 && f[5].Contains("rdkafka")).Select(f => f[5]).Distinct().ToList();

    [Fact]
    public void This_process_and_its_mock_cluster_run_the_bundled_library()
    {
        var loaded = BundledLibrdkafka.Load();
        Assert.Equal("2.16.0", BundledLibrdkafka.ExpectedVersion);
        Assert.Equal(BundledLibrdkafka.ExpectedVersion, loaded.Version);
        Assert.Equal(BundledLibrdkafka.ExpectedVersion, Confluent.Kafka.Library.VersionString);
        using var kafka = new MockKafkaCluster();
        Assert.Equal(BundledLibrdkafka.ExpectedVersion, MockKafkaCluster.LibraryVersion);
        Assert.Equal([BundledLibrdkafka.DefaultPath], MappedRdkafka(Environment.ProcessId));
    }

    [Fact]
    public async Task The_collector_logs_and_maps_the_bundled_library_only()
    {
        using var kafka = new MockKafkaCluster();
        await using var collector = await CollectorProcess.StartAsync(new Dictionary<string, string>
        {
            ["AKTO_KAFKA_BROKER_URL"] = kafka.Bootstraps,
            ["TRACE_COMMS"] = "no-such-comm",
        });
        var bundled = BundledLibrdkafka.PathIn(Path.GetDirectoryName(Repo.CollectorBinary)!);
        var line = await collector.WaitForLogAsync(l => l.Contains("kafka: librdkafka "));
        Assert.True(line is not null, collector.Log);
        Assert.EndsWith($"kafka: librdkafka 2.16.0 loaded from {bundled} (librdkafka.redist 2.16.0)", line);
        Assert.Equal([bundled], MappedRdkafka(collector.Pid));
    }

    public static IEnumerable<object[]> Broken() => [["missing"], ["not a library"]];

    [Theory]
    [MemberData(nameof(Broken))]
    public void Without_its_bundled_library_the_collector_refuses_kafka_instead_of_taking_the_hosts(string how)
    {
        // a copy of the published collector whose bundled library is gone or damaged, on a host
        // that offers another librdkafka under the name .NET's probing falls back to (as
        // librdkafka-dev does)
        var copy = Repo.TempDir("publish-copy");
        var hostLibs = Repo.TempDir("host-libs");
        File.CreateSymbolicLink(Path.Combine(hostLibs, "librdkafka.so"), DebianLibrary);
        Shell.Check("cp", $"-a {Path.GetDirectoryName(Repo.CollectorBinary)}/. {copy}/");
        var library = BundledLibrdkafka.PathIn(copy);
        if (how == "missing") File.Delete(library);
        else File.WriteAllText(library, "not an ELF file\n");
        Assert.True(File.Exists(DebianLibrary), "kcat's librdkafka1 is expected here, to prove it is not taken");

        using var kafka = new MockKafkaCluster();
        var (code, stdout, stderr) = Shell.Run(Path.Combine(copy, "Collector"), "", TimeSpan.FromSeconds(60), env: new Dictionary<string, string>
        {
            ["AKTO_KAFKA_BROKER_URL"] = kafka.Bootstraps,
            ["TRACE_COMMS"] = "no-such-comm",
            ["METRICS_BIND"] = $"127.0.0.1:{Repo.FreePort()}",
            ["LD_LIBRARY_PATH"] = hostLibs,
        });
        Directory.Delete(copy, recursive: true);
        Directory.Delete(hostLibs, recursive: true);
        Assert.Equal(Collector.CollectorHost.ExitKafkaLibrary, code);
        Assert.Equal("", stdout);
        var line = Assert.Single(stderr.Split('\n'), l => l.Contains("cannot start the Kafka output"));
        Assert.Contains($"cannot load the bundled librdkafka", line);
        Assert.Contains(library, line);
    }
}
