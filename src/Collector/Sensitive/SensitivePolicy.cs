using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using YamlDotNet.Core;
using YamlDotNet.Serialization;

namespace Collector.Sensitive;

public enum SensitiveAction : byte { Off, Report, Mask, Drop }

/// <summary>A policy that does not validate: one line saying where and why.</summary>
public sealed class SensitivePolicyException(string message) : Exception(message);

/// <summary>One category of a policy: built-in or custom, what to do when it is found, and where
/// it applies.</summary>
public sealed class CategoryRule
{
    public required int Id { get; init; }
    public required string Name { get; init; }
    public SensitiveAction Action { get; init; } = SensitiveAction.Report;
    /// <summary>Endpoints the category applies to (host glob '/' path glob); empty: all.</summary>
    public IReadOnlyList<EndpointGlob> Endpoints { get; init; } = [];
    /// <summary>Matched values that are not reported (whole-value regular expressions).</summary>
    public IReadOnlyList<Regex> Except { get; init; } = [];
    /// <summary>Custom only: a match in a value.</summary>
    public Regex? Values { get; init; }
    /// <summary>Custom only: the name (JSON key, header, field, parameter) the value is under.</summary>
    public Regex? Keys { get; init; }
    public bool IsBuiltIn => Id < Categories.BuiltInCount;

    public bool IsExcepted(string value)
    {
        foreach (var e in Except)
            if (e.IsMatch(value)) return true;
        return false;
    }
}

/// <summary>host/path glob: '*' any run of bytes without '/', '**' any run; the host part
/// without its port. "*/api/**" is every host's /api/ and below.</summary>
public sealed class EndpointGlob
{
    public string Text { get; }
    private readonly string _host, _path;

    public EndpointGlob(string text)
    {
        Text = text;
        var slash = text.IndexOf('/');
        if (slash < 0) throw new SensitivePolicyException($"'{text}' is not host/path (a glob of each, e.g. */api/**)");
        _host = text[..slash];
        _path = text[slash..];
        if (_host.Length == 0) throw new SensitivePolicyException($"'{text}' has no host part (use * for every host)");
    }

    public bool Matches(string host, ReadOnlySpan<char> path) => Glob(_host, host) && Glob(_path, path);

    internal static bool Glob(ReadOnlySpan<char> pattern, ReadOnlySpan<char> s)
    {
        if (pattern.IsEmpty) return s.IsEmpty;
        if (pattern[0] == '*')
        {
            var any = pattern.Length > 1 && pattern[1] == '*';
            var rest = pattern[(any ? 2 : 1)..];
            for (var k = 0; k <= s.Length; k++)
            {
                if (Glob(rest, s[k..])) return true;
                if (k < s.Length && !any && s[k] == '/') return false;
            }
            return false;
        }
        return !s.IsEmpty && char.ToLowerInvariant(pattern[0]) == char.ToLowerInvariant(s[0]) && Glob(pattern[1..], s[1..]);
    }
}

public enum MaskStyle : byte { Hmac, Fixed }

/// <summary>A sensitive-data policy, validated: which categories, what action each takes, where,
/// and how masked values are written. Immutable: a reload makes a new one.</summary>
public sealed class SensitivePolicy
{
    public IReadOnlyList<CategoryRule> Rules { get; }
    /// <summary>Rules by id (built-ins at their BuiltIn value; null: off).</summary>
    public CategoryRule?[] ById { get; }
    /// <summary>Built-ins on, one bit each (the scanner's enabled set).</summary>
    public uint BuiltInsOn { get; }
    public IReadOnlyList<CategoryRule> Custom { get; }
    public MaskStyle MaskStyle { get; }
    public string FixedMask { get; }
    public bool Masks => Rules.Any(r => r.Action == SensitiveAction.Mask);
    public string Description { get; }

    public const string DefaultFixedMask = "[MASKED]";

    public SensitivePolicy(IReadOnlyList<CategoryRule> rules, MaskStyle style, string fixedMask, string description)
    {
        Rules = rules.Where(r => r.Action != SensitiveAction.Off).ToArray();
        ById = new CategoryRule?[Categories.BuiltInCount + rules.Count];
        foreach (var r in Rules) ById[r.Id] = r;
        BuiltInsOn = Rules.Where(r => r.IsBuiltIn).Aggregate(0u, (bits, r) => bits | (1u << r.Id));
        Custom = Rules.Where(r => !r.IsBuiltIn).ToArray();
        MaskStyle = style;
        FixedMask = fixedMask;
        Description = description;
    }

    public string NameOf(int id) => ById[id]?.Name ?? (id < Categories.BuiltInCount ? Categories.BuiltInNames[id] : "custom");

    /// <summary>The built-in policy: every built-in category, action report, everywhere.</summary>
    public static SensitivePolicy Default { get; } = new(
        Categories.BuiltInNames.Select((n, i) => new CategoryRule { Id = i, Name = n }).ToArray(),
        MaskStyle.Hmac, DefaultFixedMask, "default: every built-in category, action report");

    /// <summary>A policy document, YAML or JSON (JSON when it starts with '{').</summary>
    public static SensitivePolicy Parse(string text, string source)
    {
        object? tree;
        try
        {
            tree = text.TrimStart().StartsWith('{') ? FromJson(JsonDocument.Parse(text).RootElement)
                : new DeserializerBuilder().Build().Deserialize<object?>(text);
        }
        catch (JsonException e)
        {
            throw new SensitivePolicyException($"not valid JSON: {e.Message}");
        }
        catch (YamlException e)
        {
            throw new SensitivePolicyException($"not valid YAML at line {e.Start.Line}: {e.InnerException?.Message ?? e.Message}");
        }
        if (tree is not Dictionary<object, object?> root)
            throw new SensitivePolicyException("the policy must be a mapping (mask, builtins, categories)");
        foreach (var key in root.Keys)
            if (key is not ("mask" or "builtins" or "categories"))
                throw new SensitivePolicyException($"unknown top-level key '{key}' (known: mask, builtins, categories)");

        var style = MaskStyle.Hmac;
        var fixedMask = DefaultFixedMask;
        if (root.TryGetValue("mask", out var maskNode) && maskNode is not null)
        {
            var mask = Map(maskNode, "mask");
            foreach (var (k, v) in mask)
            {
                switch (k)
                {
                    case "with":
                        style = Scalar(v, "mask.with") switch
                        {
                            "hmac" => MaskStyle.Hmac,
                            "fixed" => MaskStyle.Fixed,
                            var other => throw new SensitivePolicyException($"mask.with: '{other}' is neither hmac nor fixed"),
                        };
                        break;
                    case "text":
                        fixedMask = Scalar(v, "mask.text");
                        if (fixedMask.Length == 0 || fixedMask.Length > 64 || fixedMask.Any(c => c < 0x20 || c > 0x7e || c is '"' or '\\'))
                            throw new SensitivePolicyException("mask.text: 1-64 printable ASCII characters, no quote or backslash (it goes into JSON strings as it is)");
                        break;
                    default:
                        throw new SensitivePolicyException($"mask: unknown key '{k}' (known: with, text)");
                }
            }
        }

        var allBuiltIns = true;
        if (root.TryGetValue("builtins", out var b) && b is not null)
        {
            allBuiltIns = Scalar(b, "builtins") switch
            {
                "all" => true,
                "listed" => false,
                var other => throw new SensitivePolicyException($"builtins: '{other}' is neither all nor listed"),
            };
        }

        var rules = new List<CategoryRule>();
        var configured = new Dictionary<string, Dictionary<string, object?>>(StringComparer.Ordinal);
        if (root.TryGetValue("categories", out var c) && c is not null)
            foreach (var (name, node) in Map(c, "categories"))
                configured[name] = node is null ? new() : Map(node, $"categories.{name}");
        for (var i = 0; i < Categories.BuiltInCount; i++)
        {
            var name = Categories.BuiltInNames[i];
            if (configured.Remove(name, out var node)) rules.Add(Rule(i, name, node, custom: false));
            else if (allBuiltIns) rules.Add(new CategoryRule { Id = i, Name = name });
        }
        var id = Categories.BuiltInCount;
        foreach (var (name, node) in configured)
        {
            if (name.Length == 0 || name.Length > 64 || !name.All(ch => ch is >= 'A' and <= 'Z' or >= '0' and <= '9' or '_'))
                throw new SensitivePolicyException($"categories.{name}: a custom category's name is 1-64 of A-Z, 0-9 and _");
            if (!node.ContainsKey("values") && !node.ContainsKey("keys"))
                throw new SensitivePolicyException($"categories.{name}: not a built-in category ({string.Join(", ", Categories.BuiltInNames)}); a custom category needs values or keys");
            rules.Add(Rule(id++, name, node, custom: true));
        }
        var on = rules.Count(r => r.Action != SensitiveAction.Off);
        return new SensitivePolicy(rules, style, fixedMask, $"{source}: {on} categories on ({rules.Count(r => r.Action == SensitiveAction.Mask)} mask, {rules.Count(r => r.Action == SensitiveAction.Drop)} drop)");
    }

    private static CategoryRule Rule(int id, string name, Dictionary<string, object?> node, bool custom)
    {
        var where = $"categories.{name}";
        var action = SensitiveAction.Report;
        IReadOnlyList<EndpointGlob> endpoints = [];
        IReadOnlyList<Regex> except = [];
        Regex? values = null, keys = null;
        foreach (var (k, v) in node)
        {
            switch (k)
            {
                case "action":
                    action = Scalar(v, $"{where}.action") switch
                    {
                        "off" => SensitiveAction.Off,
                        "report" => SensitiveAction.Report,
                        "mask" => SensitiveAction.Mask,
                        "drop" => SensitiveAction.Drop,
                        var other => throw new SensitivePolicyException($"{where}.action: '{other}' is not one of off, report, mask, drop"),
                    };
                    break;
                case "endpoints":
                    endpoints = List(v, $"{where}.endpoints").Select(e =>
                    {
                        try { return new EndpointGlob(e); }
                        catch (SensitivePolicyException x) { throw new SensitivePolicyException($"{where}.endpoints: {x.Message}"); }
                    }).ToArray();
                    break;
                case "except":
                    except = List(v, $"{where}.except").Select(e => Pattern($"^(?:{e})$", $"{where}.except", e)).ToArray();
                    break;
                case "values" when custom:
                    values = Pattern(Scalar(v, $"{where}.values"), $"{where}.values");
                    break;
                case "keys" when custom:
                    keys = Pattern(Scalar(v, $"{where}.keys"), $"{where}.keys", ignoreCase: true);
                    break;
                default:
                    throw new SensitivePolicyException($"{where}: unknown key '{k}' (known: action, endpoints, except{(custom ? ", values, keys" : "")})");
            }
        }
        return new CategoryRule { Id = id, Name = name, Action = action, Endpoints = endpoints, Except = except, Values = values, Keys = keys };
    }

    /// <summary>Policy expressions run on every value of every exchange: the non-backtracking
    /// engine keeps each match linear in the value whatever the pattern.</summary>
    private static Regex Pattern(string pattern, string where, string? shown = null, bool ignoreCase = false)
    {
        try
        {
            return new Regex(pattern, RegexOptions.NonBacktracking | RegexOptions.CultureInvariant | (ignoreCase ? RegexOptions.IgnoreCase : 0));
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException)
        {
            throw new SensitivePolicyException($"{where}: '{shown ?? pattern}' is not a usable regular expression: {e.Message}");
        }
    }

    private static Dictionary<string, object?> Map(object? node, string where)
    {
        if (node is not Dictionary<object, object?> map)
            throw new SensitivePolicyException($"{where}: expected a mapping");
        return map.ToDictionary(kv => Convert.ToString(kv.Key, CultureInfo.InvariantCulture) ?? "", kv => kv.Value, StringComparer.Ordinal);
    }

    private static string Scalar(object? node, string where) =>
        node is string s ? s : throw new SensitivePolicyException($"{where}: expected a single value");

    private static IReadOnlyList<string> List(object? node, string where) => node switch
    {
        string s => [s],
        List<object?> l => l.Select(x => Scalar(x, where)).ToArray(),
        _ => throw new SensitivePolicyException($"{where}: expected a list of strings"),
    };

    /// <summary>JSON as the YAML reader gives it: mappings, lists and strings.</summary>
    private static object? FromJson(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => e.EnumerateObject().ToDictionary(p => (object)p.Name, p => FromJson(p.Value)),
        JsonValueKind.Array => e.EnumerateArray().Select(FromJson).ToList(),
        JsonValueKind.String => e.GetString(),
        JsonValueKind.Null => null,
        _ => e.GetRawText(),
    };
}
