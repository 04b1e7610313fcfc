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
/// file, its reloads (<see cref="PolledFile"/>, like the discovery rules file); a new file that does
/// not validate is refused with a log line and the policy in effect stays.</summary>
public sealed class SensitivePolicyFile
{
    public const string Variable = "SENSITIVE_DATA_POLICY";
    public const string KeyVariable = "SENSITIVE_DATA_MASK_KEY";
    private const string What = "sensitive-data policy";
    private readonly PolledFile _file;

    public SensitivePolicyFile(string path, string initialText, SensitivePolicySource source, SensitiveMetrics metrics, bool hasKey,
        ILogger log, TimeSpan? interval = null)
    {
        _file = new PolledFile(path, initialText, What, text =>
        {
            SensitivePolicy policy;
            try
            {
                policy = Validate(text, path, hasKey);
            }
            catch (SensitivePolicyException e)
            {
                return e.Message;
            }
            source.Replace(policy);
            Volatile.Write(ref metrics.CategoriesOn, policy.Rules.Count);
            metrics.PolicyReloads.Increment();
            log.LogInformation("sensitive-data policy reloaded: {Policy}", policy.Description);
            return null;
        }, () => $"the policy in effect ({source.Current?.Description})", metrics.PolicyReloadFailures.Increment, log, interval);
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
            text = PolledFile.Read(path, What);
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

    /// <summary>Looks at the file every interval until cancelled.</summary>
    public Task RunAsync(CancellationToken stop) => _file.RunAsync(stop);

    /// <summary>One look: a new text that validates replaces the policy; one that does not is
    /// refused once (counted and logged) and the policy in effect stays.</summary>
    public void Check() => _file.Check();
}
