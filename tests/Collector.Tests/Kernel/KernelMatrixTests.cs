using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Collector.Tests.Support;
using Xunit.Abstractions;

namespace Collector.Tests.Kernel;

/// <summary>Issue 12: the collector on the kernels users' nodes run, each booted in its own VM
/// (qemu, software emulation: scripts/vm/boot.sh) over this machine's root, with the built tree run
/// as it is (scripts/vm/capture-check.sh): the collector tracing curl and nginx, a GET and a POST
/// over plaintext and over TLS, every exchange checked from both ends, /ready, and no kernel drop.
/// The kernel packages are fetched when absent and cached (scripts/vm/kernels.sh). One line per
/// kernel goes to build/kernel-matrix.log, which .ci/run prints.</summary>
[Collection("kernel")]
public sealed class KernelMatrixTests(ITestOutputHelper output)
{
    private const int HttpPort = 18080, TlsPort = 18443;
    private const string Posted = """{"kernel":"check","n":1}""";

    // 5.10 runs the compat set, whose loops the verifier walks one iteration at a time: it gets the
    // most events per call the settings allow, the heaviest walk
    [Theory]
    [InlineData("5.10", "compat set", "per-CPU scratch event", "CAPTURE_CHUNKS_PER_CALL=64")]
    [InlineData("6.1", "current set", "copied in power-of-two pieces", "")]
    [InlineData("6.12", "current set", "copied in power-of-two pieces", "")]
    [InlineData("6.12-rt", "current set", "copied in power-of-two pieces", "")]
    public void Collector_loads_attaches_and_captures(string kernel, string programSet, string copyPath, string collectorEnv)
    {
        var clock = Stopwatch.StartNew();
        var outDir = Repo.TempDir("vm-" + kernel);
        var vm = Path.Combine(Repo.Root, "scripts", "vm");
        var (code, stdout, stderr) = Shell.Run(Path.Combine(vm, "boot.sh"),
            $"{kernel} {outDir} 1500 -- env CHECK_COLLECTOR_ENV={collectorEnv} {Path.Combine(vm, "capture-check.sh")} {outDir}",
            TimeSpan.FromMinutes(30));
        string Read(string name) => File.Exists(Path.Combine(outDir, name)) ? File.ReadAllText(Path.Combine(outDir, name)).Trim() : "";
        var collectorLog = Read("collector.log");
        var context = $"boot.sh exited {code}; stage {Read("stage")}\n{stderr}\n{stdout}\ncheck.log:\n{Read("check.log")}\ncollector.log:\n{Tail(collectorLog, 60)}";
        Assert.True(code == 0, context);
        Assert.Equal("done", Read("stage"));

        var release = Regex(collectorLog, @"kernel (\S+) is|collector starting: pid \d+, kernel (\S+),");
        var variant = collectorLog.Split('\n').SingleOrDefault(l => l.Contains("eBPF programs:")) ?? "";
        Assert.True(variant.Contains(programSet) && variant.Contains(copyPath), $"variant line: '{variant}'\n{context}");
        Assert.NotEqual("", Read("ready_secs"));

        var messages = Read("exchanges.jsonl").Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => JsonDocument.Parse(l).RootElement).ToList();
        var expected = new[]
        {
            (Client: "curl", Method: "GET", Port: HttpPort, Path: "/hello", Request: "", Response: "hello from nginx\n"),
            (Client: "curl", Method: "POST", Port: HttpPort, Path: "/echo", Request: Posted, Response: "posted\n"),
            (Client: "curl", Method: "GET", Port: TlsPort, Path: "/hello", Request: "", Response: "hello from nginx\n"),
            (Client: "curl", Method: "POST", Port: TlsPort, Path: "/echo", Request: Posted, Response: "posted\n"),
            // python3 exits without closing its socket: only the process's exit ends the connection
            (Client: "python3", Method: "GET", Port: HttpPort, Path: "/hello?exit", Request: "", Response: "hello from nginx\n"),
        };
        var right = 0;
        var problems = new List<string>();
        foreach (var e in expected)
        {
            var ofThis = messages.Where(m => m.GetProperty("method").GetString() == e.Method &&
                                             m.GetProperty("path").GetString() == e.Path &&
                                             m.GetProperty("destIp").GetString() == $"127.0.0.1:{e.Port}").ToList();
            foreach (var (process, direction) in new[] { (e.Client, "2"), ("nginx", "1") })
            {
                var m = ofThis.Where(x => x.GetProperty("process_name").GetString() == process).ToList();
                if (m.Count != 1) { problems.Add($"{e.Method} {e.Path} :{e.Port} from {process}: {m.Count} messages"); continue; }
                var x = m[0];
                var wrong = new List<string>();
                if (x.GetProperty("direction").GetString() != direction) wrong.Add("direction");
                if (x.GetProperty("requestPayload").GetString() != e.Request) wrong.Add("request body");
                if (x.GetProperty("responsePayload").GetString() != e.Response) wrong.Add("response body");
                if (x.GetProperty("statusCode").GetString() != "200") wrong.Add("status");
                if (!(x.GetProperty("ip").GetString() ?? "").StartsWith("127.0.0.1:")) wrong.Add("client address");
                if (ofThis.Select(o => o.GetProperty("ip").GetString()).Distinct().Count() != 1) wrong.Add("ends disagree on the client address");
                if (wrong.Count == 0) right++;
                else problems.Add($"{e.Method} {e.Path} :{e.Port} from {process}: wrong {string.Join(", ", wrong)}: {x}");
            }
        }
        var exitEnded = Counter(Read("metrics.txt"), "collector_connections_ended_total{reason=\"process_exit\"}");

        var drops = KernelDrops(Read("metrics.txt"));
        var seconds = clock.Elapsed.TotalSeconds;
        var line = string.Format(CultureInfo.InvariantCulture,
            "kernel-matrix: {0,-8} {1,-28} {2}; exchanges right {3}/{4}; kernel drops {5}; connections ended by process exit {8}; ready in {6} s; {7:F0} s in all",
            kernel, release, variant[(variant.IndexOf("eBPF programs:", StringComparison.Ordinal) + "eBPF programs: ".Length)..].Split(" (")[0]
                + ", copy " + (variant.Contains("pieces") ? "dynptr pieces" : variant.Contains("scratch") ? "per-CPU scratch" : "direct"),
            right, expected.Length * 2, drops, Read("ready_secs"), seconds, exitEnded);
        output.WriteLine(line);
        File.AppendAllText(Path.Combine(Repo.Build, "kernel-matrix.log"), line + "\n");

        Assert.True(problems.Count == 0, string.Join("\n", problems) + "\n" + context);
        Assert.Equal(expected.Length * 2, messages.Count);
        Assert.Equal(0, drops);
        Assert.True(exitEnded >= 1, "no connection was ended by a process exit (sched_process_exit, the last thread)\n" + context);
        Assert.Equal("0", Read("collector_rc"));
        // the DaemonSet's default selection (processes in containers) loads and gets ready too
        Assert.True(Read("default_ready_secs") != "" && Read("default_rc") == "0",
            $"default settings: ready after '{Read("default_ready_secs")}' s, exit '{Read("default_rc")}'\n{Tail(Read("default.log"), 40)}");
        Assert.Contains("tracing processes in containers", Read("default.log"));
    }

    /// <summary>The sum of collector_kernel_drops_total over every reason; -1 when the series is missing.</summary>
    private static long KernelDrops(string metrics)
    {
        var values = metrics.Split('\n').Where(l => l.StartsWith("collector_kernel_drops_total{"))
            .Select(l => long.Parse(l[(l.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture)).ToList();
        return values.Count == 0 ? -1 : values.Sum();
    }

    private static long Counter(string metrics, string series) =>
        metrics.Split('\n').Where(l => l.StartsWith(series + " ")).Select(l => long.Parse(l[(series.Length + 1)..], CultureInfo.InvariantCulture))
            .DefaultIfEmpty(-1).First();

    private static string Regex(string text, string pattern)
    {
        var m = System.Text.RegularExpressions.Regex.Match(text, pattern);
        return !m.Success ? "?" : m.Groups.Cast<System.Text.RegularExpressions.Group>().Skip(1).First(g => g.Success).Value;
    }

    private static string Tail(string text, int lines) => string.Join("\n", text.Split('\n').TakeLast(lines));
}
