namespace Collector.Tests.Support;

/// <summary>The Go test programs of tests/Peers (go-tls: an HTTPS server and client on net/http;
/// go-offsets: the fd-chain offsets of its toolchain), built by tests/Peers/build-go.sh into
/// build/peers/go/goV/ with each Debian Go toolchain (scripts/deps.sh installs them) and in each
/// form Go services ship in. The first use in a test run builds what is missing (minutes from a
/// cold cache; seconds otherwise).</summary>
public static class GoPeers
{
    public static string Dir => Path.Combine(Repo.Build, "peers", "go");

    /// <summary>Toolchains with the register ABI (1.17+) that Debian 12 packages.</summary>
    public static readonly string[] Toolchains = ["1.19", "1.21", "1.22", "1.23"];

    /// <summary>The stack-ABI toolchain, built only to show the "too old" answer.</summary>
    public const string TooOldToolchain = "1.15";

    public static readonly string[] Forms = ["default", "strip", "pie", "piestrip", "nocgo"];

    /// <summary>Externally linked (gcc) PIE, with and without symbols: built with Go 1.23 only.</summary>
    public static readonly string[] ExternalForms = ["extpie", "extpiestrip"];

    /// <summary>Every (toolchain, form) build-go.sh makes of go-tls, 1.15 aside.</summary>
    public static IEnumerable<(string Version, string Form)> Builds() =>
        Toolchains.SelectMany(v => Forms.Select(f => (v, f))).Concat(ExternalForms.Select(f => ("1.23", f)));

    /// <summary>The form with symbols that a stripped form is built like.</summary>
    public static string? UnstrippedTwin(string form) => form switch
    {
        "strip" => "default",
        "piestrip" => "pie",
        "extpiestrip" => "extpie",
        _ => null,
    };

    public static string GoTool(string version) => $"/usr/lib/go-{version}/bin/go";

    /// <summary>The environment every go command of the tests runs in: offline, no toolchain switch.</summary>
    public static readonly IReadOnlyDictionary<string, string> GoEnv = new Dictionary<string, string>
    {
        ["GO111MODULE"] = "off", ["GOPROXY"] = "off", ["GOTOOLCHAIN"] = "local", ["GOFLAGS"] = "-p=1", ["GOTELEMETRY"] = "off",
    };

    private static readonly Lazy<string> Built = new(() =>
    {
        // the script takes a file lock: test classes (or runs) that build at once wait for one another
        var (code, o, e) = Shell.Run("bash", $"{Path.Combine(Repo.Root, "tests", "Peers", "build-go.sh")} {Dir}", TimeSpan.FromMinutes(30));
        if (code != 0) throw new InvalidOperationException($"build-go.sh exited {code}: {e}{o}");
        return Dir;
    }, LazyThreadSafetyMode.ExecutionAndPublication);

    public static string EnsureBuilt() => Built.Value;

    public static string TlsPeer(string version, string form) => Path.Combine(EnsureBuilt(), "go" + version, "go-tls-" + form);

    public static string OffsetsProgram(string version) => Path.Combine(EnsureBuilt(), "go" + version, "go-offsets");
}
