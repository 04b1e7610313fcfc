using System.Text.RegularExpressions;
using Collector.Tests.Support;

namespace Collector.Tests.Operations;

/// <summary>No Docker engine runs here, so the image is never built in CI. What keeps it honest:
/// its build stage runs the same script as `make` (which CI runs), with the same packages, and the
/// paths and port agree with the rest of the deployment.</summary>
public sealed class ImageTests
{
    private static readonly string Dockerfile = File.ReadAllText(Path.Combine(Repo.Root, "Dockerfile"));
    private const string Script = "scripts/build-release.sh";

    [Fact]
    public void The_dockerfile_and_the_makefile_build_with_the_same_script()
    {
        var stages = Regex.Split(Dockerfile, @"(?m)^FROM ").Skip(1).ToList();
        Assert.Equal(2, stages.Count);
        Assert.Matches($@"(?m)^RUN {Regex.Escape(Script)} /out\s*$", stages[0]);
        Assert.Matches(@"(?m)^COPY --from=build /out /opt/akto-collector\s*$", stages[1]);

        var recipe = MakeRecipe("$(COLLECTOR)");
        Assert.Contains(recipe, l => l.StartsWith(Script + " "));
        Assert.Contains(Script, MakePrerequisites("$(COLLECTOR)"));
        Assert.Contains("collector", MakePrerequisites("build"));
        Assert.Contains("build", MakePrerequisites("test"));
        // the script itself builds with make and dotnet publish, as the image's stage needs
        var script = File.ReadAllText(Path.Combine(Repo.Root, Script));
        Assert.Contains("make bpf", script);
        Assert.Contains("dotnet publish src/Collector/Collector.csproj -c Release", script);
        Assert.True((File.GetUnixFileMode(Path.Combine(Repo.Root, Script)) & UnixFileMode.UserExecute) != 0);
    }

    [Fact]
    public void The_build_stage_installs_only_packages_make_deps_installs_and_the_runtime_has_its_libraries()
    {
        var deps = File.ReadAllText(Path.Combine(Repo.Root, "scripts", "deps.sh"));
        var listed = Regex.Match(deps, @"PACKAGES=\((.*?)\n\)", RegexOptions.Singleline).Groups[1].Value
            .Split('\n').Select(l => l.Split('#')[0]).SelectMany(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)).ToHashSet();
        Assert.Contains("libbpf-dev", listed);
        var stages = Regex.Split(Dockerfile, @"(?m)^FROM ").Skip(1).ToList();
        var buildPackages = AptInstalled(stages[0]).Except(["ca-certificates", "dotnet-sdk-10.0"]).ToList();
        Assert.NotEmpty(buildPackages);
        foreach (var p in buildPackages) Assert.Contains(p, listed);
        var runtime = AptInstalled(stages[1]);
        foreach (var p in new[] { "libbpf1", "aspnetcore-runtime-10.0" }) Assert.Contains(p, runtime);
        // librdkafka is the NuGet one in the published folder; a Debian one in the image could
        // only ever be the wrong version
        Assert.DoesNotContain(runtime, p => p.Contains("rdkafka"));
        Assert.DoesNotContain(listed, p => p.Contains("rdkafka"));
        Assert.DoesNotContain(runtime, p => p.EndsWith("-dev") || p.StartsWith("clang") || p.StartsWith("dotnet-sdk"));
    }

    [Fact]
    public void The_image_runs_the_binary_where_the_unit_and_the_readme_expect_it()
    {
        Assert.Matches(@"(?m)^ENTRYPOINT \[""/opt/akto-collector/Collector""\]\s*$", Dockerfile);
        Assert.Equal(["/opt/akto-collector/Collector"], SystemdUnit.Values("ExecStart"));
        Assert.Equal(["/opt/akto-collector"], SystemdUnit.Values("WorkingDirectory"));
        Assert.Contains($"{Script} /opt/akto-collector", File.ReadAllText(Readme.PathOnDisk));
    }

    [Fact]
    public void The_dockerignore_leaves_out_build_output_and_git_but_nothing_the_build_needs()
    {
        var rules = File.ReadAllLines(Path.Combine(Repo.Root, ".dockerignore"))
            .Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')).ToList();
        foreach (var excluded in new[] { ".git/HEAD", "build/collector/Collector", "build/collector.bpf.o", "src/Collector/bin/Release/x.dll",
                     "src/Collector/obj/project.assets.json", "tests/Collector.Tests/bin/Release/x.dll" })
            Assert.True(Excluded(rules, excluded), $"{excluded} would be sent to the image build");
        foreach (var needed in new[] { "Makefile", "bpf/collector.bpf.c", "bpf/collector.h", "scripts/build-release.sh", "scripts/deps.sh",
                     "src/Collector/Collector.csproj", "src/Collector/Program.cs", "build/vmlinux.h" })
            Assert.False(Excluded(rules, needed), $"{needed} is needed by the image build but excluded");
    }

    /// <summary>.dockerignore semantics: the last matching rule wins; a rule matching a parent
    /// directory excludes what is under it; ! re-includes; ** spans directories.</summary>
    private static bool Excluded(List<string> rules, string path)
    {
        var excluded = false;
        foreach (var rule in rules)
        {
            var negate = rule.StartsWith('!');
            var pattern = (negate ? rule[1..] : rule).TrimEnd('/');
            var regex = "^" + Regex.Escape(pattern).Replace(@"\*\*/", "(.*/)?").Replace(@"\*\*", ".*").Replace(@"\*", "[^/]*").Replace(@"\?", "[^/]") + "(/.*)?$";
            if (Regex.IsMatch(path, regex)) excluded = !negate;
        }
        return excluded;
    }

    private static List<string> AptInstalled(string stage)
    {
        var packages = new List<string>();
        foreach (Match m in Regex.Matches(stage, @"apt-get install -y --no-install-recommends((?:[^&\\]|\\\n)*)"))
            packages.AddRange(m.Groups[1].Value.Replace("\\\n", " ").Split(' ', StringSplitOptions.RemoveEmptyEntries));
        return packages;
    }

    private static string[] MakeLines() => File.ReadAllLines(Path.Combine(Repo.Root, "Makefile"));

    private static List<string> MakeRecipe(string target)
    {
        var lines = MakeLines();
        var i = Array.FindIndex(lines, l => l.StartsWith(target + ":"));
        Assert.True(i >= 0, $"no {target} rule in the Makefile");
        return lines.Skip(i + 1).TakeWhile(l => l.StartsWith('\t')).Select(l => l.Trim()).ToList();
    }

    private static string[] MakePrerequisites(string target)
    {
        var line = MakeLines().Single(l => l.StartsWith(target + ":"));
        return line[(target.Length + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
    }
}
