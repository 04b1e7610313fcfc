using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Collector.Tests.Support;

/// <summary>Keeps every formatted log line, with its level, for assertions.</summary>
public sealed class ListLogger : ILogger
{
    public ConcurrentQueue<(LogLevel Level, string Message)> Entries { get; } = new();

    /// <summary>What was logged at Information and above.</summary>
    public IReadOnlyList<(LogLevel Level, string Text)> Lines =>
        Entries.Where(e => e.Level >= LogLevel.Information).ToArray();

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
        // the exception goes in too: a console logger prints it, so what it says is logged
        Entries.Enqueue((logLevel, formatter(state, exception) + (exception is null ? "" : "\n" + exception)));
}
