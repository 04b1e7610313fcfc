using Collector.Configuration;
using Collector.Metrics;
using Microsoft.Extensions.Logging;

namespace Collector.Filtering;

/// <summary>The discovery rules in effect at start-up and where they came from.</summary>
public sealed record StartupRules(IReadOnlyList<DiscoveryRule> Rules, string? FileText, string Description);

/// <summary>Discovery rules from a file (AKTO_MODULE_DISCOVERY_CONFIG_PATH), read at start and
/// reloaded when its content changes (<see cref="PolledFile"/>). A new file that does not parse is
/// refused with a log line and the rules in effect stay.</summary>
public sealed class DiscoveryRulesFile
{
    private const string What = "discovery rules";
    private readonly PolledFile _file;

    public DiscoveryRulesFile(string path, string initialText, ExchangeFilter filter, CollectorMetrics metrics, ILogger log,
        TimeSpan? interval = null)
    {
        _file = new PolledFile(path, initialText, What, text =>
        {
            IReadOnlyList<DiscoveryRule> rules;
            try
            {
                rules = DiscoveryRules.Parse(text);
            }
            catch (DiscoveryRulesException e)
            {
                return e.Message;
            }
            filter.ReplaceRules(rules);
            Volatile.Write(ref metrics.DiscoveryRuleCount, rules.Count);
            metrics.ConfigReloads.Increment();
            log.LogInformation("discovery rules reloaded from {Path}: {Count} rules in effect", path, rules.Count);
            return null;
        }, () => $"the {filter.Rules.Count} rules in effect", metrics.ConfigReloadFailures.Increment, log, interval);
    }

    /// <summary>The rules at start-up. Both set: the file wins (the inline rules must still parse).
    /// A problem is a <see cref="SettingsException"/> naming the variable.</summary>
    public static StartupRules Load(Settings s)
    {
        IReadOnlyList<DiscoveryRule> inline;
        try
        {
            inline = DiscoveryRules.Parse(s.DiscoveryConfig);
        }
        catch (DiscoveryRulesException e)
        {
            throw new SettingsException("AKTO_MODULE_DISCOVERY_CONFIG", e.Message);
        }
        if (s.DiscoveryConfigPath is null)
            return new StartupRules(inline, null, s.DiscoveryConfig is null
                ? "none: every request is kept"
                : $"{inline.Count} from AKTO_MODULE_DISCOVERY_CONFIG");

        string text;
        try
        {
            text = PolledFile.Read(s.DiscoveryConfigPath, What);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            throw new SettingsException("AKTO_MODULE_DISCOVERY_CONFIG_PATH", $"cannot read {s.DiscoveryConfigPath}: {e.Message}");
        }
        IReadOnlyList<DiscoveryRule> rules;
        try
        {
            rules = DiscoveryRules.Parse(text);
        }
        catch (DiscoveryRulesException e)
        {
            throw new SettingsException("AKTO_MODULE_DISCOVERY_CONFIG_PATH", $"{s.DiscoveryConfigPath}: {e.Message}");
        }
        var description = $"{rules.Count} from {s.DiscoveryConfigPath} (AKTO_MODULE_DISCOVERY_CONFIG_PATH), reloaded when it changes";
        if (s.DiscoveryConfig is not null)
            description += "; AKTO_MODULE_DISCOVERY_CONFIG is set too and ignored: the file wins";
        return new StartupRules(rules, text, description);
    }

    /// <summary>Looks at the file every interval until cancelled.</summary>
    public Task RunAsync(CancellationToken stop) => _file.RunAsync(stop);

    /// <summary>One look: new content that parses replaces the rules; new content that does not is
    /// refused once (counted and logged) and the rules in effect stay.</summary>
    public void Check() => _file.Check();
}
