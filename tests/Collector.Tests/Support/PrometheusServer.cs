using System.Diagnostics;
using System.Text.Json;

namespace Collector.Tests.Support;

/// <summary>A real Prometheus server (Debian's `prometheus`) on a loopback port chosen by the test,
/// with its own storage directory, scraping the given targets every second.</summary>
public sealed class PrometheusServer : IDisposable
{
    private readonly Process _process;
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(10) };
    public string Dir { get; }
    public int Port { get; }
    public string BaseUrl => $"http://127.0.0.1:{Port}";
    public string Job { get; }

    public PrometheusServer(string job, params string[] targets)
    {
        Job = job;
        Dir = Repo.TempDir("prometheus");
        Port = Repo.FreePort();
        var config = Path.Combine(Dir, "prometheus.yml");
        File.WriteAllText(config, $$"""
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
              evaluation_interval: 1s
            scrape_configs:
              - job_name: {{job}}
                metrics_path: /metrics
                static_configs:
                  - targets: [{{string.Join(", ", targets.Select(t => $"\"{t}\""))}}]
            """);
        var psi = new ProcessStartInfo("prometheus")
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var a in new[]
                 {
                     $"--config.file={config}", $"--storage.tsdb.path={Path.Combine(Dir, "data")}",
                     $"--web.listen-address=127.0.0.1:{Port}", "--log.level=warn",
                 })
            psi.ArgumentList.Add(a);
        _process = new Process { StartInfo = psi };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_log) _log.Add(e.Data); };
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_log) _log.Add(e.Data); };
        _process.Start();
        _process.BeginErrorReadLine();
        _process.BeginOutputReadLine();
    }

    private readonly List<string> _log = new();
    public string Log { get { lock (_log) return string.Join("\n", _log); } }

    public async Task WaitReadyAsync(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (_process.HasExited) throw new InvalidOperationException($"prometheus exited with {_process.ExitCode}:\n{Log}");
            try
            {
                var r = await _http.GetAsync($"{BaseUrl}/-/ready");
                if (r.IsSuccessStatusCode) return;
            }
            catch (HttpRequestException) { }
            await Task.Delay(200);
        }
        throw new TimeoutException("prometheus not ready:\n" + Log);
    }

    /// <summary>GET /api/v1/query: the whole answer (status, data, error).</summary>
    public async Task<JsonElement> QueryAsync(string promql)
    {
        var r = await _http.GetAsync($"{BaseUrl}/api/v1/query?query={Uri.EscapeDataString(promql)}");
        var body = await r.Content.ReadAsStringAsync();
        return JsonDocument.Parse(body).RootElement.Clone();
    }

    /// <summary>The instant vector of a query as (labels, value) pairs; throws when the query fails.</summary>
    public async Task<List<(Dictionary<string, string> Labels, double Value)>> VectorAsync(string promql)
    {
        var answer = await QueryAsync(promql);
        if (answer.GetProperty("status").GetString() != "success")
            throw new InvalidOperationException($"query {promql} failed: {answer}");
        var result = new List<(Dictionary<string, string>, double)>();
        foreach (var s in answer.GetProperty("data").GetProperty("result").EnumerateArray())
        {
            var labels = s.GetProperty("metric").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!);
            var value = double.Parse(s.GetProperty("value")[1].GetString()!, System.Globalization.CultureInfo.InvariantCulture);
            result.Add((labels, value));
        }
        return result;
    }

    /// <summary>Polls a scalar query (one series) until the predicate holds; returns the last value (NaN when no series).</summary>
    public async Task<double> WaitForValueAsync(string promql, Func<double, bool> until, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        var last = double.NaN;
        while (DateTime.UtcNow < deadline)
        {
            var v = await VectorAsync(promql);
            if (v.Count == 1)
            {
                last = v[0].Value;
                if (until(last)) return last;
            }
            await Task.Delay(250);
        }
        return last;
    }

    /// <summary>GET /api/v1/metadata: metric family name → type, as scraped (families without any
    /// series yet are listed too).</summary>
    public async Task<Dictionary<string, string>> MetadataAsync()
    {
        var body = await _http.GetStringAsync($"{BaseUrl}/api/v1/metadata");
        var data = JsonDocument.Parse(body).RootElement.GetProperty("data");
        return data.EnumerateObject().ToDictionary(p => p.Name, p => p.Value[0].GetProperty("type").GetString()!);
    }

    /// <summary>GET /api/v1/targets: the active targets.</summary>
    public async Task<List<JsonElement>> TargetsAsync()
    {
        var body = await _http.GetStringAsync($"{BaseUrl}/api/v1/targets?state=active");
        var doc = JsonDocument.Parse(body).RootElement;
        return doc.GetProperty("data").GetProperty("activeTargets").EnumerateArray().Select(e => e.Clone()).ToList();
    }

    public void Dispose()
    {
        _http.Dispose();
        try
        {
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException) { } // exited between the check and the kill
        _process.WaitForExit(10_000);
        _process.Dispose();
        Directory.Delete(Dir, recursive: true);
    }
}
