using System.Text;
using Collector.Configuration;
using Collector.Metrics;
using Microsoft.Extensions.Logging;

namespace Collector.Sensitive;

/// <summary>The policy in effect, read by the output on every exchange and replaced whole by a
/// reload (one reference: no lock, no torn policy). Null: classification is off.</summary>
public sealed class SensitivePolicySource(SensitivePolicy? initial)
{
    private SensitivePolicy? _current = initial;
    public SensitivePolicy? Current => Volatile.Read(ref _current);
    public void Replace(SensitivePolicy policy) => Volatile.Write(ref _current, policy);
}

/// <summary>The policy at start-up (SENSITIVE_DATA_POLICY: off, default or a file) and, for a
/// file, its reloads: polled like the discovery rules file (a ConfigMap changes by swapping a
/// symlink above the file, which a watch on the file does not see); a new file that does not
/// validate is refused with a log line and the policy in effect stays.</summary>
public sealed class SensitivePolicyFile
{
    public static readonly TimeSpan DefaultInterval = TimeSpan.FromSeconds(2);
    public const int MaxBytes = 1 << 20;
    public const string Variable = "SENSITIVE_DATA_POLICY";
    public const string KeyVariable = "SENSITIVE_DATA_MASK_KEY";

    private readonly string _path;
    private readonly SensitivePolicySource _source;
    private readonly SensitiveMetrics _metrics;
    private readonly bool _hasKey;
    private readonly ILogger _log;
    private readonly TimeSpan _interval;
    private string _seen;
    private string? _readProblem;

    public SensitivePolicyFile(string path, string initialText, SensitivePolicySource source, SensitiveMetrics metrics, bool hasKey,
        ILogger log, TimeSpan? interval = null)
    {
        _path = path;
        _seen = initialText;
        _source = source;
        _metrics = metrics;
        _hasKey = hasKey;
        _log = log;
        _interval = interval ?? DefaultInterval;
    }

    /// <summary>The policy at start-up (null: off) and the file's text when it came from one. A
    /// problem is a <see cref="SettingsException"/> naming the variable, in one line.</summary>
    public static (SensitivePolicy? Policy, string? FileText) Load(Settings s)
    {
        if (s.SensitiveMaskKey is { Length: < 16 })
            throw new SettingsException(KeyVariable, "shorter than 16 characters: too weak a key for the hash that masks values");
        switch (s.SensitiveDataPolicy.ToLowerInvariant())
        {
            case "off":
                return (null, null);
            case "default":
                return (SensitivePolicy.Default, null);
        }
        var path = s.SensitiveDataPolicy;
        string text;
        try
        {
            text = Read(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            throw new SettingsException(Variable, $"neither off, default nor a readable policy file: {path}: {e.Message}");
        }
        SensitivePolicy policy;
        try
        {
            policy = SensitivePolicy.Parse(text, path);
        }
        catch (SensitivePolicyException e)
        {
            throw new SettingsException(Variable, $"{path}: {e.Message}");
        }
        if (NeedsKey(policy) && s.SensitiveMaskKey is null)
            throw new SettingsException(KeyVariable, $"not set, and {path} masks with hmac (set the key, or mask.with: fixed)");
        return (policy, text);
    }

    private static bool NeedsKey(SensitivePolicy p) => p.Masks && p.MaskStyle == MaskStyle.Hmac;

    /// <summary>A policy text parsed and checked against what the collector has (the mask key).</summary>
    public static SensitivePolicy Validate(string text, string path, bool hasKey)
    {
        var policy = SensitivePolicy.Parse(text, path);
        if (NeedsKey(policy) && !hasKey)
            throw new SensitivePolicyException($"{KeyVariable}: not set, and {path} masks with hmac (set the key, or mask.with: fixed)");
        return policy;
    }

    public static byte[]? KeyBytes(Settings s) => s.SensitiveMaskKey is null ? null : Encoding.UTF8.GetBytes(s.SensitiveMaskKey);

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
                    _metrics.PolicyReloadFailures.Increment();
                    _log.LogError(e, "checking the sensitive-data policy file {Path} failed; keeping the policy in effect", _path);
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested) { }
    }

    /// <summary>One look: a new text that validates replaces the policy; one that does not is
    /// refused once (counted and logged) and the policy in effect stays.</summary>
    public void Check()
    {
        string text;
        try
        {
            text = Read(_path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            if (e.Message == _readProblem) return;
            _readProblem = e.Message;
            _metrics.PolicyReloadFailures.Increment();
            _log.LogWarning("cannot read the sensitive-data policy file {Path}: {Error}; keeping the policy in effect", _path, e.Message);
            return;
        }
        if (_readProblem is not null)
        {
            _readProblem = null;
            _log.LogInformation("the sensitive-data policy file {Path} is readable again", _path);
        }
        if (text == _seen) return;
        _seen = text;
        SensitivePolicy policy;
        try
        {
            policy = Validate(text, _path, _hasKey);
        }
        catch (SensitivePolicyException e)
        {
            _metrics.PolicyReloadFailures.Increment();
            _log.LogWarning("refused the new sensitive-data policy in {Path}: {Error}; keeping the policy in effect ({Policy})",
                _path, e.Message, _source.Current?.Description);
            return;
        }
        _source.Replace(policy);
        Volatile.Write(ref _metrics.CategoriesOn, policy.Rules.Count);
        _metrics.PolicyReloads.Increment();
        _log.LogInformation("sensitive-data policy reloaded: {Policy}", policy.Description);
    }

    private static string Read(string path)
    {
        var length = new FileInfo(path).Length; // FileNotFoundException when missing
        if (length > MaxBytes)
            throw new InvalidDataException($"{length} bytes is more than the {MaxBytes} a policy file may have");
        return File.ReadAllText(path);
    }
}
