using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;

namespace Collector.Tests.Support;

/// <summary>The built collector (build/collector/Collector) run as a separate process, as users
/// run it: its stdout (one JSON message a line) and stderr (logs) are collected.</summary>
public sealed class CollectorProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _lines = new();
    private readonly ConcurrentQueue<string> _log = new();
    private readonly TaskCompletionSource _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public int MetricsPort { get; }
    public string Log => string.Join("\n", _log);
    public IReadOnlyCollection<string> Lines => _lines;
    public IReadOnlyCollection<string> LogLines => _log;
    public int Pid => _process.Id;
    public bool HasExited => _process.HasExited;

    /// <summary>For failure messages: whether the collector still runs, else its status and log.</summary>
    public string Status => _process.HasExited ? $"the collector exited with {_process.ExitCode}:\n{Log}" : "the collector is running";

    private CollectorProcess(IDictionary<string, string> env, IReadOnlyList<string>? prefix)
    {
        MetricsPort = Repo.FreePort();
        // prefix: a command that ends by exec'ing the collector (setpriv, a shell with a trap), so
        // that the process id stays the collector's
        var psi = new ProcessStartInfo(prefix is { Count: > 0 } ? prefix[0] : Repo.CollectorBinary)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (prefix is { Count: > 0 })
        {
            foreach (var a in prefix.Skip(1)) psi.ArgumentList.Add(a);
            psi.ArgumentList.Add(Repo.CollectorBinary);
        }
        psi.Environment["METRICS_BIND"] = $"127.0.0.1:{MetricsPort}";
        foreach (var (k, v) in env) psi.Environment[k] = v;
        _process = new Process { StartInfo = psi, EnableRaisingEvents = true };
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) _lines.Enqueue(e.Data); };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) _log.Enqueue(e.Data); };
        _process.Exited += (_, _) => _exited.TrySetResult();
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    /// <summary>Starts the collector and waits until /ready answers 200 (every probe attached).</summary>
    public static async Task<CollectorProcess> StartAsync(IDictionary<string, string> env, TimeSpan? timeout = null,
        IReadOnlyList<string>? prefix = null)
    {
        var c = new CollectorProcess(env, prefix);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(60));
        while (DateTime.UtcNow < deadline)
        {
            if (c._process.HasExited)
            {
                c._process.WaitForExit(); // drains stdout and stderr
                throw new InvalidOperationException($"collector exited with {c._process.ExitCode} before ready:\n{c.Log}");
            }
            try
            {
                var r = await http.GetAsync($"http://127.0.0.1:{c.MetricsPort}/ready");
                if ((int)r.StatusCode == 200) return c;
            }
            catch (HttpRequestException) { }
            catch (TaskCanceledException) { }
            await Task.Delay(100);
        }
        await c.DisposeAsync();
        throw new TimeoutException("collector not ready:\n" + c.Log);
    }

    public IEnumerable<JsonElement> Messages()
    {
        foreach (var line in _lines)
        {
            JsonElement e;
            try { e = JsonDocument.Parse(line).RootElement.Clone(); }
            catch (JsonException) { throw new InvalidOperationException("stdout line is not JSON: " + line); }
            yield return e;
        }
    }

    /// <summary>Waits until predicate holds over the messages so far.</summary>
    public async Task<List<JsonElement>> WaitForAsync(Func<JsonElement, bool> match, int count, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(20));
        while (true)
        {
            var found = Messages().Where(match).ToList();
            if (found.Count >= count || DateTime.UtcNow > deadline) return found;
            await Task.Delay(100);
        }
    }

    public async Task<string> MetricsAsync()
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        return await http.GetStringAsync($"http://127.0.0.1:{MetricsPort}/metrics");
    }

    /// <summary>A sample's value from /metrics (0 when absent).</summary>
    public async Task<double> MetricAsync(string sample)
    {
        var text = await MetricsAsync();
        foreach (var line in text.Split('\n'))
            if (line.StartsWith(sample + " ")) return double.Parse(line[(sample.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        return 0;
    }

    /// <summary>Sends a signal (TERM, INT, ...) and waits for the exit code.</summary>
    public async Task<int> SignalAndWaitAsync(string signal, TimeSpan timeout)
    {
        Shell.Check("kill", $"-{signal} {_process.Id}");
        await _exited.Task.WaitAsync(timeout);
        _process.WaitForExit();
        return _process.ExitCode;
    }

    /// <summary>Waits until a log line matches.</summary>
    public async Task<string?> WaitForLogAsync(Func<string, bool> match, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(20));
        while (DateTime.UtcNow < deadline)
        {
            var line = _log.FirstOrDefault(match);
            if (line is not null) return line;
            await Task.Delay(100);
        }
        return null;
    }

    /// <summary>SIGTERM, then waits for the exit code.</summary>
    public async Task<int> StopAsync(TimeSpan? timeout = null)
    {
        if (!_process.HasExited)
        {
            Shell.Run("kill", $"-TERM {_process.Id}");
            await _exited.Task.WaitAsync(timeout ?? TimeSpan.FromSeconds(40));
        }
        _process.WaitForExit();
        return _process.ExitCode;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited) await StopAsync();
        }
        catch (TimeoutException)
        {
            _process.Kill(entireProcessTree: true);
        }
        _process.Dispose();
    }
}
