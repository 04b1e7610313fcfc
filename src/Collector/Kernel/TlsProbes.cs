using Microsoft.Win32.SafeHandles;
using System.Threading.Channels;
using Collector.Configuration;
using Collector.Metrics;
using Microsoft.Extensions.Logging;

namespace Collector.Kernel;

/// <summary>Finds the files that carry a TLS source (any mapped ELF object a provider recognises,
/// not a name pattern) and attaches the uprobes the providers ask for once per (device, inode): one
/// attachment serves every process mapping the file, containers included (opened through
/// /proc/PID/root).</summary>
public sealed class TlsProbes : IDisposable
{
    /// <summary>Where distributions keep the system TLS libraries: probed at start so that the very
    /// first request of a short-lived process (curl) is seen even before any scan finds it mapped.</summary>
    private static readonly string[] SystemLibraryDirs =
        ["/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/lib/aarch64-linux-gnu"];

    private readonly KernelCapture _kernel;
    private readonly Settings _settings;
    private readonly CollectorMetrics _metrics;
    private readonly ILogger _log;
    private readonly IReadOnlyList<ITlsProvider> _providers;
    /// <summary>Every provider's functions: a file's symbol tables are read once for all of them.</summary>
    private readonly HashSet<string> _wanted;
    private readonly Dictionary<(ulong Dev, ulong Ino), List<BpfLinkHandle>> _attached = new();
    private readonly HashSet<(ulong Dev, ulong Ino)> _examined = new();
    private readonly Channel<int> _execs = Channel.CreateBounded<int>(new BoundedChannelOptions(4096) { FullMode = BoundedChannelFullMode.DropOldest });
    private readonly object _lock = new();
    private bool _detached;

    public TlsProbes(KernelCapture kernel, Settings settings, CollectorMetrics metrics, ILogger log)
        : this(kernel, settings, metrics, log, TlsProviders.For(kernel, metrics, log)) { }

    public TlsProbes(KernelCapture kernel, Settings settings, CollectorMetrics metrics, ILogger log,
        IReadOnlyList<ITlsProvider> providers)
    {
        _kernel = kernel;
        _settings = settings;
        _metrics = metrics;
        _log = log;
        _providers = providers;
        _wanted = providers.SelectMany(p => p.Functions).ToHashSet(StringComparer.Ordinal);
    }

    public int AttachedFiles { get { lock (_lock) return _attached.Count; } }

    /// <summary>A process called exec: look at its mappings now and again shortly after, as the
    /// dynamic loader maps the libraries after exec.</summary>
    public void OnExec(uint tgid) => _execs.Writer.TryWrite((int)tgid);

    public void AttachSystemLibraries()
    {
        if (!_settings.CaptureSsl) return;
        foreach (var dir in SystemLibraryDirs)
        {
            if (!Directory.Exists(dir)) continue;
            foreach (var pattern in _providers.SelectMany(p => p.SystemLibraries))
                foreach (var file in Directory.EnumerateFiles(dir, pattern))
                    Examine(file, file);
        }
    }

    /// <summary>Scans every process's executable mappings.</summary>
    public void ScanAll()
    {
        if (!_settings.CaptureSsl) return;
        _metrics.ProcessScans.Increment();
        foreach (var dir in Directory.EnumerateDirectories(_settings.HostProc))
        {
            if (int.TryParse(Path.GetFileName(dir), out var pid) && pid != Environment.ProcessId)
                ScanProcess(pid);
        }
    }

    public void ScanProcess(int pid)
    {
        string[] lines;
        try
        {
            lines = File.ReadAllLines(Path.Combine(_settings.HostProc, pid.ToString(), "maps"));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return; // the process ended
        }
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var line in lines)
        {
            // address perms offset dev inode path
            var parts = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length < 6 || parts[1].Length < 3 || parts[1][2] != 'x') continue;
            var path = parts[5].Trim();
            if (!path.StartsWith('/') || path.EndsWith(" (deleted)") || !seen.Add(path)) continue;
            Examine(Path.Combine(_settings.HostProc, pid.ToString(), "root") + path, path);
        }
    }

    /// <summary>Runs exec-triggered and periodic scans until cancelled.</summary>
    public async Task RunAsync(CancellationToken stop)
    {
        var nextFull = DateTime.UtcNow + _settings.UprobePollInterval;
        var later = new List<(DateTime When, int Pid)>();
        while (!stop.IsCancellationRequested)
        {
            try
            {
                using var tick = CancellationTokenSource.CreateLinkedTokenSource(stop);
                tick.CancelAfter(TimeSpan.FromMilliseconds(50));
                var pid = await _execs.Reader.ReadAsync(tick.Token);
                _metrics.ProcessExecScans.Increment();
                ScanProcess(pid);
                var now = DateTime.UtcNow;
                later.Add((now.AddMilliseconds(50), pid));
                later.Add((now.AddMilliseconds(300), pid));
                later.Add((now.AddSeconds(1), pid));
            }
            catch (OperationCanceledException) when (!stop.IsCancellationRequested) { }
            catch (OperationCanceledException) { break; }
            var t = DateTime.UtcNow;
            for (var i = later.Count - 1; i >= 0; i--)
            {
                if (later[i].When > t) continue;
                _metrics.ProcessExecScans.Increment();
                ScanProcess(later[i].Pid);
                later.RemoveAt(i);
            }
            if (t >= nextFull)
            {
                ScanAll();
                nextFull = t + _settings.UprobePollInterval;
            }
        }
    }

    private void Examine(string openPath, string displayPath)
    {
        // The file is held open while it is read and probed, and named /proc/self/fd/N: openPath
        // goes through /proc/PID/root of a process that may exit meanwhile, and every attach after
        // that would fail, leaving the file half probed and never looked at again.
        SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(openPath, FileMode.Open, FileAccess.Read);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return; }
        using (handle) Examine(handle, displayPath);
    }

    private void Examine(SafeFileHandle handle, string displayPath)
    {
        var openPath = $"/proc/self/fd/{handle.DangerousGetHandle()}";
        (ulong, ulong) key;
        try
        {
            var st = Stat(openPath);
            if (st is null) return;
            key = st.Value;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return; }
        lock (_lock)
        {
            if (!_examined.Add(key)) return;
        }
        var points = new List<ProbePoint>();
        var sources = new List<string>();
        try
        {
            var file = new ElfCandidate(openPath, displayPath, ElfSymbols.FindFunctions(openPath, _wanted));
            foreach (var provider in _providers)
            {
                var mine = provider.Probes(file);
                if (mine.Count == 0) continue;
                points.AddRange(mine);
                sources.Add(provider.Source.MetricLabel);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return; // not readable, or not an ELF file we can use: nothing to probe in it
        }
        if (points.Count == 0) return;
        var links = new List<BpfLinkHandle>();
        var library = string.Join("+", sources);
        foreach (var point in points)
        {
            try
            {
                links.Add(_kernel.AttachUprobe(point, openPath));
            }
            catch (BpfException e)
            {
                _metrics.ProbeAttachFailures.Increment();
                _log.LogWarning("could not attach {Program} to {Function} in {Path}: {Error}", point.Program, point.Site, displayPath, e.Message);
            }
        }
        lock (_lock)
        {
            if (_detached)
            {
                // shutdown began while this file was being attached: give the links back at once
                ProbeDetach.DisposeConcurrently(links);
                return;
            }
            _attached[key] = links;
        }
        _metrics.ProbesAttached[displayPath].Set(links.Count);
        _log.LogInformation("attached {Count} {Library} uprobes to {Path}", links.Count, library, displayPath);
    }

    private static unsafe (ulong, ulong)? Stat(string path)
    {
        var buf = stackalloc byte[256]; // struct stat: st_dev at 0, st_ino at 8 on x86_64 and arm64
        if (Interop.Libc.Stat(path, buf) != 0) return null;
        return (*(ulong*)buf, *(ulong*)(buf + 8));
    }

    /// <summary>Uprobes attached now, over all library files.</summary>
    public int AttachedProbes { get { lock (_lock) return _attached.Values.Sum(l => l.Count); } }

    /// <summary>Hands over every uprobe link for detaching; nothing is attached afterwards.</summary>
    internal List<BpfLinkHandle> TakeLinks()
    {
        lock (_lock)
        {
            _detached = true;
            var links = _attached.Values.SelectMany(l => l).ToList();
            _attached.Clear();
            return links;
        }
    }

    public void Dispose() => ProbeDetach.DisposeConcurrently(TakeLinks());
}
