using Microsoft.Extensions.Logging;

namespace Collector.Configuration;

/// <summary>A settings file read at start and reloaded when its content changes (the discovery
/// rules, the sensitive-data policy). The content is polled rather than watched: a mounted
/// ConfigMap changes by swapping a symlink (..data) above the file, which inotify on the file's
/// path does not report. New content is handed to <c>apply</c>, which puts it in effect or refuses
/// it with a reason; a refused content, or a file that cannot be read, is counted and logged once
/// and what is in effect stays.</summary>
public sealed class PolledFile
{
    public static readonly TimeSpan DefaultInterval = TimeSpan.FromSeconds(2);
    public const int MaxBytes = 1 << 20;

    private readonly string _path;
    private readonly string _what;
    private readonly Func<string, string?> _apply;
    private readonly Func<string> _inEffect;
    private readonly Action _countFailure;
    private readonly ILogger _log;
    private readonly TimeSpan _interval;
    private string _seen;          // the content last looked at, applied or refused
    private string? _readProblem;  // the last read failure, logged once

    /// <param name="what">what the file holds, for the log ("discovery rules")</param>
    /// <param name="apply">puts new content in effect and returns null, or returns why it is refused</param>
    /// <param name="inEffect">what stays in effect when new content is refused ("the 2 rules in effect")</param>
    public PolledFile(string path, string initialText, string what, Func<string, string?> apply, Func<string> inEffect,
        Action countFailure, ILogger log, TimeSpan? interval = null)
    {
        _path = path;
        _seen = initialText;
        _what = what;
        _apply = apply;
        _inEffect = inEffect;
        _countFailure = countFailure;
        _log = log;
        _interval = interval ?? DefaultInterval;
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
                    _countFailure();
                    _log.LogError(e, "checking the {What} file {Path} failed; keeping {InEffect}", _what, _path, _inEffect());
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested) { }
    }

    /// <summary>One look: new content is applied or refused once; a read failure is logged once
    /// per kind of failure.</summary>
    public void Check()
    {
        string text;
        try
        {
            text = Read(_path, _what);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            if (e.Message == _readProblem) return;
            _readProblem = e.Message;
            _countFailure();
            _log.LogWarning("cannot read the {What} file {Path}: {Error}; keeping {InEffect}", _what, _path, e.Message, _inEffect());
            return;
        }
        if (_readProblem is not null)
        {
            _readProblem = null;
            _log.LogInformation("the {What} file {Path} is readable again", _what, _path);
        }
        if (text == _seen) return;
        _seen = text;
        if (_apply(text) is { } refused)
        {
            _countFailure();
            _log.LogWarning("refused the new {What} in {Path}: {Error}; keeping {InEffect}", _what, _path, refused, _inEffect());
        }
    }

    /// <summary>The file's text, at most <see cref="MaxBytes"/>.</summary>
    public static string Read(string path, string what)
    {
        var length = new FileInfo(path).Length; // FileNotFoundException when missing
        if (length > MaxBytes)
            throw new InvalidDataException($"{length} bytes is more than the {MaxBytes} a {what} file may have");
        return File.ReadAllText(path);
    }
}
