using System.Text.RegularExpressions;
using Collector.Tests.Support;
using YamlDotNet.RepresentationModel;

namespace Collector.Tests.Operations;

/// <summary>The YAML documents under daemonset/, parsed with YamlDotNet, with small helpers to walk
/// them. Scalars keep their style, so a quoted "false" is not taken for a boolean.</summary>
public sealed class Manifests
{
    public static string Dir => Path.Combine(Repo.Root, "daemonset");

    /// <summary>File name → its documents' root nodes.</summary>
    public Dictionary<string, List<YamlMappingNode>> Files { get; } = new(StringComparer.Ordinal);

    public Manifests()
    {
        foreach (var path in Directory.EnumerateFiles(Dir).Where(p => p.EndsWith(".yaml") || p.EndsWith(".yml")).Order())
        {
            var stream = new YamlStream();
            using (var reader = new StringReader(File.ReadAllText(path)))
                stream.Load(reader);
            Files[Path.GetFileName(path)] = stream.Documents
                .Select(d => d.RootNode as YamlMappingNode
                             ?? throw new InvalidDataException($"{path}: a document is not a mapping"))
                .ToList();
        }
    }

    public IEnumerable<YamlMappingNode> All => Files.Values.SelectMany(d => d);

    public YamlMappingNode Single(string kind, string? name = null) =>
        All.Single(d => d.Str("kind") == kind && (name is null || d.At("metadata", "name").Str() == name));

    public static string ReadText(string file) => File.ReadAllText(Path.Combine(Dir, file));
}

public static class Yaml
{
    public static YamlNode? Get(this YamlNode node, string key) =>
        node is YamlMappingNode m && m.Children.TryGetValue(new YamlScalarNode(key), out var v) ? v : null;

    /// <summary>The node at a path of keys; fails naming the path when a key is missing.</summary>
    public static YamlNode At(this YamlNode node, params string[] path)
    {
        var n = node;
        foreach (var key in path)
            n = n.Get(key) ?? throw new KeyNotFoundException($"no {string.Join(".", path)} (missing {key}) at {node.Start}");
        return n;
    }

    public static string Str(this YamlNode node, params string[] path) =>
        node.At(path) is YamlScalarNode s ? s.Value ?? "" : throw new InvalidDataException($"{string.Join(".", path)} is not a scalar");

    public static IEnumerable<YamlNode> Items(this YamlNode node, params string[] path) =>
        node.At(path) is YamlSequenceNode s ? s.Children : throw new InvalidDataException($"{string.Join(".", path)} is not a list");

    public static IEnumerable<KeyValuePair<YamlNode, YamlNode>> Pairs(this YamlNode node, params string[] path) =>
        node.At(path) is YamlMappingNode m ? m.Children : throw new InvalidDataException($"{string.Join(".", path)} is not a mapping");

    /// <summary>A plain (unquoted) true/false, as Kubernetes reads a boolean.</summary>
    public static bool Bool(this YamlNode node, params string[] path)
    {
        var n = node.At(path) as YamlScalarNode ?? throw new InvalidDataException($"{string.Join(".", path)} is not a scalar");
        if (n.Style is not (YamlDotNet.Core.ScalarStyle.Plain or YamlDotNet.Core.ScalarStyle.Any))
            throw new InvalidDataException($"{string.Join(".", path)} is a quoted string, not a boolean: {n.Value}");
        return n.Value switch
        {
            "true" => true,
            "false" => false,
            _ => throw new InvalidDataException($"{string.Join(".", path)} = {n.Value} is not a boolean"),
        };
    }

    /// <summary>A plain integer.</summary>
    public static int Int(this YamlNode node, params string[] path)
    {
        var n = node.At(path) as YamlScalarNode ?? throw new InvalidDataException($"{string.Join(".", path)} is not a scalar");
        if (n.Style is not (YamlDotNet.Core.ScalarStyle.Plain or YamlDotNet.Core.ScalarStyle.Any) || !int.TryParse(n.Value, out var v))
            throw new InvalidDataException($"{string.Join(".", path)} = {n.Value} is not a plain integer");
        return v;
    }
}

/// <summary>daemonset/README.md: the capability table and the env-file example of the host install.</summary>
public static partial class Readme
{
    public static string PathOnDisk => Path.Combine(Repo.Root, "daemonset", "README.md");

    /// <summary>The first column of the table under "### Capabilities", without backticks.</summary>
    public static List<string> Capabilities()
    {
        var section = Section("### Capabilities");
        return CapabilityRow().Matches(section).Select(m => m.Groups[1].Value).ToList();
    }

    /// <summary>The section under a heading, to the next heading of any level outside code blocks.</summary>
    public static string Section(string heading)
    {
        var lines = File.ReadAllLines(PathOnDisk);
        var start = Array.IndexOf(lines, heading);
        if (start < 0) throw new InvalidDataException($"README has no {heading}");
        var body = new List<string>();
        var inCode = false;
        foreach (var line in lines.Skip(start + 1))
        {
            if (line.StartsWith("```", StringComparison.Ordinal)) inCode = !inCode;
            else if (!inCode && Regex.IsMatch(line, "^#{1,6} ")) break;
            body.Add(line);
        }
        return string.Join("\n", body);
    }

    [GeneratedRegex(@"^\|\s*`([A-Z_]+)`\s*\|", RegexOptions.Multiline)]
    private static partial Regex CapabilityRow();
}
