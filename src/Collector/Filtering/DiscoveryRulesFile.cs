using Collector.Configuration;
using Collector.Metrics;
using Microsoft.Extensions.Logging;

namespace Collector.Filtering;

/// <summary>The discovery rules in effect at start-up and where they came from.</summary>
public sealed record StartupRules(IReadOnlyList<DiscoveryRule> Rules, string? FileText, string Description);

/// <summary>Discovery rules from a file (AKTO_MODULE_DISCOVERY_CONFIG_PATH), read at start and
/// reloaded when its content changes. The content is polled rather than watched: a mounted
/// ConfigMap changes by swapping a symlink (..data) above the file, which inotify on the file's
/// path does not report. A new file that does not parse is refused with a log line and the rules
/// in effect stay.</summary>
public sealed class DiscoveryRulesFile
{
    public static readonly TimeSpan DefaultInterval = TimeSpan.FromSeconds(2);
    public const int MaxBytes = 1 << 20;

    private readonly string _path;
    private readonly ExchangeFilter _filter;
    private readonly CollectorMetrics _metrics;
    private readonly ILogger _log;
    private readonly TimeSpan _interval;
    private string _seen;          // the content last looked at, applied or refused
    private string? _readProblem;  // the last read failure, logged once

    public DiscoveryRulesFile(string path, string initialText, ExchangeFilter filter, CollectorMetrics metrics, ILogger log,
        TimeSpan? interval = null)
    {
        _path = path;
        _seen = initialText;
        _filter = filter;
        _metrics = metrics;
        _log = log;
        _interval = interval ?? DefaultInterval;
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
            text = Read(s.DiscoveryConfigPath);
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
    public async Task RunAsync(CancellationToken stop)
    {
        using var timer = new PeriodicTimer(_interval);
        try
        {
            while (await timer.WaitForNextTickAsync(stop))
            {
                try
                {
                    Check();
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    // an unexpected failure must not end the reloads silently: say it, count it, go on
                    _metrics.ConfigReloadFailures.Increment();
                    _log.LogError(e, "checking the discovery rules file {Path} failed; keeping the {Count} rules in effect",
                        _path, _filter.Rules.Count);
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested) { }
    }

    /// <summary>One look: new content that parses replaces the rules; new content that does not is
    /// refused once (counted and logged) and the rules in effect stay.</summary>
    public void Check()
    {
        string text;
        try
        {
            text = Read(_path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            var problem = e.Message;
            if (problem == _readProblem) return;
            _readProblem = problem;
            _metrics.ConfigReloadFailures.Increment();
            _log.LogWarning("cannot read the discovery rules file {Path}: {Error}; keeping the {Count} rules in effect",
                _path, problem, _filter.Rules.Count);
            return;
        }
        if (_readProblem is not null)
        {
            _readProblem = null;
            _log.LogInformation("the discovery rules file {Path} is readable again", _path);
        }
        if (text == _seen) return;
        _seen = text;
        IReadOnlyList<DiscoveryRule> rules;
        try
        {
            rules = DiscoveryRules.Parse(text);
        }
        catch (DiscoveryRulesException e)
        {
            _metrics.ConfigReloadFailures.Increment();
            _log.LogWarning("refused the new discovery rules in {Path}: {Error}; keeping the {Count} rules in effect",
                _path, e.Message, _filter.Rules.Count);
            return;
        }
        _filter.ReplaceRules(rules);
        Volatile.Write(ref _metrics.DiscoveryRuleCount, rules.Count);
        _metrics.ConfigReloads.Increment();
        _log.LogInformation("discovery rules reloaded from {Path}: {Count} rules in effect", _path, rules.Count);
    }

    private static string Read(string path)
    {
        var length = new FileInfo(path).Length; // FileNotFoundException when missing
        if (length > MaxBytes)
            throw new InvalidDataException($"{length} bytes is more than the {MaxBytes} a rules file may have");
        return File.ReadAllText(path);
    }
}
