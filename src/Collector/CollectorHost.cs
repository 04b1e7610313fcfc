using System.Diagnostics;
using System.Net;
using System.Runtime.InteropServices;
using Collector.Configuration;
using Collector.Connections;
using Collector.Events;
using Collector.Filtering;
using Collector.Http;
using Collector.Kernel;
using Collector.Lifecycle;
using Collector.Metrics;
using Collector.Output;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;

namespace Collector;

/// <summary>Wires the stages together along the data's path: kernel → events → connections →
/// HTTP → filter → output, with the status endpoint beside them.</summary>
public static class CollectorHost
{
    public const int ExitConfigError = 2;
    public const int ExitMemoryThreshold = 3;
    public const int ExitKernelError = 4;
    public const int ExitKafkaLibrary = 5;

    /// <summary>The status endpoint's paths (METRICS_BIND); the manifests' probes use them.</summary>
    public const string HealthPath = "/healthz", ReadyPath = "/ready", MetricsPath = "/metrics";

    public static async Task<int> RunAsync(Settings settings, bool sigintWasIgnored = false)
    {
        using var loggerFactory = LoggerFactory.Create(b => ConfigureLogging(b, settings));
        var log = loggerFactory.CreateLogger("collector");
        var startupNice = CapturePriority.RaiseForStartup(settings.CaptureNice, log);
        var metrics = new CollectorMetrics();
        var state = new ReadinessState();
        metrics.MemoryBudgetBytes = settings.MemoryRestartBytes;

        ExchangeFilter filter;
        StartupRules startupRules;
        (Sensitive.SensitivePolicy? Policy, string? FileText) startupPolicy;
        ISettingsSource processorSettings;
        MongoSettingsSource? mongo = null;
        try
        {
            startupRules = DiscoveryRulesFile.Load(settings);
            startupPolicy = Sensitive.SensitivePolicyFile.Load(settings);
            var fromEnvironment = HeaderValueFilter.Parse(settings.HeaderValueFilter);
            if (settings.MongoConnection is null)
            {
                processorSettings = new EnvironmentSettingsSource(fromEnvironment);
                metrics.HeaderValueFilterEntries = fromEnvironment.Count;
            }
            else
            {
                processorSettings = mongo = MongoSettingsSource.From(settings, fromEnvironment, metrics, loggerFactory.CreateLogger("mongo"));
            }
            filter = new ExchangeFilter(settings, startupRules.Rules, processorSettings);
        }
        catch (SettingsException e)
        {
            StartupError.Write(e.Message, settings.LogJson);
            return ExitConfigError;
        }
        metrics.DiscoveryRuleCount = startupRules.Rules.Count;
        metrics.Sensitive = new SensitiveMetrics(settings.SensitiveMetricsMaxSeries) { CategoriesOn = startupPolicy.Policy?.Rules.Count ?? 0 };
        foreach (var r in SensitiveMetrics.Results) _ = metrics.Sensitive.Exchanges[r];
        var policies = startupPolicy.Policy is null ? null : new Sensitive.SensitivePolicySource(startupPolicy.Policy);

        LogBanner(log, settings);
        log.LogInformation("discovery rules: {Rules}", startupRules.Description);
        log.LogInformation("header-value filter: {Source}", processorSettings.Description);
        log.LogInformation("sensitive data: {Policy}", startupPolicy.Policy?.Description ?? "off (SENSITIVE_DATA_POLICY)");
        using var stop = new CancellationTokenSource();
        using var stopReading = new CancellationTokenSource();
        void OnSignal(PosixSignalContext c)
        {
            c.Cancel = true;
            if (stop.IsCancellationRequested) return;
            log.LogInformation("received {Signal}: stopping", c.Signal == PosixSignal.SIGINT ? "SIGINT" : "SIGTERM");
            stop.Cancel();
        }
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        if (sigintWasIgnored)
        {
            if (Lifecycle.Sigint.HandlerInstalled())
                log.LogInformation("SIGINT was ignored by the parent process; the collector handles it (graceful stop)");
            else
                log.LogWarning("SIGINT is ignored (set so by the parent process) and could not be taken over: stop the collector with SIGTERM");
        }
        var rulesFile = startupRules.FileText is null ? null
            : new DiscoveryRulesFile(settings.DiscoveryConfigPath!, startupRules.FileText, filter, metrics, loggerFactory.CreateLogger("rules"));
        var rulesTask = rulesFile is null ? Task.CompletedTask : Task.Run(() => rulesFile.RunAsync(stop.Token));
        var policyFile = startupPolicy.FileText is null ? null
            : new Sensitive.SensitivePolicyFile(settings.SensitiveDataPolicy, startupPolicy.FileText, policies!, metrics.Sensitive,
                settings.SensitiveMaskKey is not null, loggerFactory.CreateLogger("sensitive"));
        var policyTask = policyFile is null ? Task.CompletedTask : Task.Run(() => policyFile.RunAsync(stop.Token));
        // start-up does not wait for MongoDB: until it answers, AKTO_HEADER_VALUE_FILTER applies
        var mongoTask = mongo is null ? Task.CompletedTask : Task.Run(() => mongo.RunAsync(stop.Token));

        WebApplication web;
        try
        {
            web = await StartStatusEndpoint(settings, metrics, state, loggerFactory);
        }
        catch (SettingsException e)
        {
            StartupError.Write(e.Message, settings.LogJson);
            stop.Cancel();
            await rulesTask;
            await policyTask;
            await mongoTask;
            return ExitConfigError;
        }

        var identity = new AktoIdentity(settings.AccountId, settings.VxlanId, Guid.NewGuid().ToString(), settings.RedactHeaders.ToHashSet());
        IMessageSink sink;
        try
        {
            sink = settings.KafkaBrokers is null ? new StdoutSink() : new KafkaSink(settings, metrics, identity.DaemonsetId, loggerFactory.CreateLogger("kafka"));
        }
        catch (LibrdkafkaException e)
        {
            // the tests proved the collector on the bundled library only: another one is refused
            log.LogCritical("cannot start the Kafka output: {Error}", e.Message);
            stop.Cancel();
            await rulesTask;
            await policyTask;
            await mongoTask;
            await web.StopAsync();
            return ExitKafkaLibrary;
        }
        var output = new OutputPipeline(filter, sink, metrics, identity, settings.MaxBodyBytes, settings.KafkaMaxMessageBytes,
            loggerFactory.CreateLogger("output"), policies, Sensitive.SensitivePolicyFile.KeyBytes(settings));

        KernelCapture kernel;
        try
        {
            // attached only once the reader runs (below)
            kernel = new KernelCapture(settings, loggerFactory.CreateLogger("kernel"), attach: false);
        }
        catch (Exception e) when (e is BpfException or KernelBelowFloorException or FileNotFoundException or InvalidOperationException or DllNotFoundException)
        {
            log.LogCritical("cannot start kernel capture: {Error}", e.Message);
            stop.Cancel();
            await rulesTask;
            await policyTask;
            await mongoTask;
            await web.StopAsync();
            return ExitKernelError;
        }

        using var kernelLifetime = kernel;
        // a scrape reads the kernel's counters then: what it shows includes every event already read
        // (the web server stops before the kernel is disposed)
        metrics.BeforeRender = () => PublishKernelCounters(kernel, metrics);
        var limits = new ReassemblyLimits(settings.InactivityThreshold, settings.MaxActiveConnections,
            settings.BufferThresholdBytes, new HttpLimits(settings.MaxHeaderBytes, settings.MaxBodyBytes));
        var table = new ConnectionTable(limits, metrics, output.Emit) { Dump = CaptureDump.Open(settings.CaptureDumpPath) };
        using var tls = new TlsProbes(kernel, settings, metrics, loggerFactory.CreateLogger("tls"));
        table.ExecObserver = tls.OnExec;
        table.ForgetKernelConnection = kernel.ForgetConnection;
        using var reader = new RingBufferReader(kernel.EventsMapFd, table, metrics, loggerFactory.CreateLogger("events"))
        {
            TraceEvents = string.Equals(Environment.GetEnvironmentVariable("COLLECTOR_TRACE_EVENTS"), "true", StringComparison.OrdinalIgnoreCase),
        };

        // continuations asynchronously: the rest of start-up must not run on the reader's thread
        // (inside SetResult), which would poll only once it was done
        var readerStarted = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        var readerThread = new Thread(() => ReadEvents(reader, table, output, settings, stopReading.Token, readerStarted, log))
        {
            Name = "ring-buffer",
            IsBackground = true,
        };
        reader.CaptureFrom(ulong.MaxValue); // nothing until every tracepoint is on (see CaptureFrom)
        readerThread.Start();
        var readerTid = await readerStarted.Task;
        // Probes go on only now that the reader polls: attached before it (as they were), a
        // collector started under load had the ring filling while the rest of start-up ran, and
        // its first poll found the ring full (events lost before a single one was read).
        try
        {
            kernel.AttachTracepoints();
            reader.CaptureFrom(ConnectionTable.MonotonicNowNs());
        }
        catch (BpfException e)
        {
            log.LogCritical("cannot start kernel capture: {Error}", e.Message);
            stopReading.Cancel();
            readerThread.Join();
            stop.Cancel();
            await rulesTask;
            await mongoTask;
            await sink.DisposeAsync();
            await web.StopAsync();
            return ExitKernelError;
        }

        tls.AttachSystemLibraries();
        tls.ScanAll();
        var tlsTask = Task.Run(() => tls.RunAsync(stop.Token));
        metrics.TracepointsAttached = kernel.TracepointCount;
        CapturePriority.EndStartup(startupNice, readerTid);
        state.Ready = true;
        LogKernelFeatures(log, settings, kernel, tls);

        var exitCode = 0;
        try
        {
            exitCode = await SuperviseAsync(kernel, metrics, settings, stop, log);
        }
        finally
        {
            // Order: no new probes, detach every probe (no new events), drain what the kernel already
            // handed over, end every connection (emits what is complete), then flush the output.
            state.Ready = false;
            var stopping = Stopwatch.StartNew();
            log.LogInformation("stopping: detaching probes, then flushing what is complete");
            // a failed background task must not skip the rest of the shutdown (the reader thread
            // still polls the ring buffer that the using blocks free)
            await LogIfFailed(tlsTask, log, "TLS library scanning");
            await LogIfFailed(rulesTask, log, "discovery rules reloading");
            await LogIfFailed(policyTask, log, "sensitive-data policy reloading");
            await LogIfFailed(mongoTask, log, "reading settings from MongoDB");
            var detached = ProbeDetach.All(kernel, tls);
            metrics.TracepointsAttached = 0;
            var detachMs = stopping.ElapsedMilliseconds;
            stopReading.Cancel();
            readerThread.Join();
            var left = await sink.FlushAsync(settings.ShutdownGrace);
            if (left > 0) log.LogWarning("{Count} messages could not be delivered before the grace period ended", left);
            await sink.DisposeAsync();
            using (var webStop = new CancellationTokenSource(TimeSpan.FromSeconds(2)))
                await web.StopAsync(webStop.Token);
            log.LogInformation("stopped in {Ms} ms: {Probes} probes detached in {DetachMs} ms, {Exchanges} exchanges emitted, exit status {Code}",
                stopping.ElapsedMilliseconds, detached, detachMs, metrics.ExchangesEmitted.Total, exitCode);
        }
        return exitCode;
    }

    /// <summary>Every 500 ms until stopped: the kernel's counters to the metrics, the memory limit, a
    /// summary of the last minute's drops. Its own method, not a loop in RunAsync: an async method's
    /// MoveNext runs at each resumption, and this one resumes twice a second for the process's life,
    /// so the JIT tiers it up (twice, with PGO); RunAsync's is 7,000 bytes of IL.</summary>
    private static async Task<int> SuperviseAsync(KernelCapture kernel, CollectorMetrics metrics, Settings settings,
        CancellationTokenSource stop, ILogger log)
    {
        var nextSummary = DateTime.UtcNow.AddMinutes(1);
        long lastSummaryTotal = 0;
        while (!stop.IsCancellationRequested)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(500), stop.Token).ContinueWith(_ => { });
            PublishKernelCounters(kernel, metrics);
            var rss = Process.GetCurrentProcess().WorkingSet64;
            if (rss > settings.MemoryRestartBytes)
            {
                log.LogCritical("memory {Rss} MB is over AKTO_MEM_THRESH_RESTART ({Limit} MB): exiting with status {Code} to be restarted",
                    rss >> 20, settings.MemoryRestartBytes >> 20, ExitMemoryThreshold);
                stop.Cancel();
                return ExitMemoryThreshold;
            }
            if (DateTime.UtcNow >= nextSummary)
            {
                nextSummary = DateTime.UtcNow.AddMinutes(1);
                var total = metrics.KernelDrops.Total + metrics.HttpDrops.Total + metrics.GapBytes.Value;
                if (total != lastSummaryTotal)
                    log.LogWarning("drops in the last minute: kernel {Kernel}, http {Http}, gap bytes {Gap}",
                        string.Join(",", metrics.KernelDrops.Series.Select(s => $"{s.Key}={s.Value.Value}")),
                        string.Join(",", metrics.HttpDrops.Series.Select(s => $"{s.Key}={s.Value.Value}")),
                        metrics.GapBytes.Value);
                lastSummaryTotal = total;
            }
        }
        return 0;
    }

    private static void ReadEvents(RingBufferReader reader, ConnectionTable table, OutputPipeline output, Settings settings,
        CancellationToken stop, TaskCompletionSource<int> started, ILogger log)
    {
        started.SetResult(CapturePriority.RaiseReader(settings.CaptureNice, log));
        var sweepEvery = (long)(settings.PollInterval.TotalSeconds * Stopwatch.Frequency);
        var nextSweep = Stopwatch.GetTimestamp() + sweepEvery;
        try
        {
            while (!stop.IsCancellationRequested)
            {
                reader.Poll(10);
                output.Idle();
                var now = Stopwatch.GetTimestamp();
                if (now >= nextSweep)
                {
                    table.Sweep();
                    nextSweep = now + sweepEvery;
                }
            }
            reader.Poll(0); // what the kernel already handed over
        }
        catch (Exception e)
        {
            log.LogCritical(e, "the ring buffer reader failed");
        }
        finally
        {
            table.EndAll("shutdown");
        }
    }

    private static async Task LogIfFailed(Task task, ILogger log, string what)
    {
        try
        {
            await task;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            log.LogError(e, "{What} failed", what);
        }
        catch (OperationCanceledException)
        {
            // stopping is how these tasks end
        }
    }

    private static void PublishKernelCounters(KernelCapture kernel, CollectorMetrics metrics)
    {
        PublishKernelDrops(kernel.ReadDropCounters(), metrics);
        var goFdChecks = kernel.ReadGoFdChecks();
        for (var i = 0; i < goFdChecks.Length; i++)
            metrics.GoFdChecks[KernelCapture.GoFdCheckLabels[i]].Set(goFdChecks[i]);
    }

    private static void PublishKernelDrops(long[] totals, CollectorMetrics metrics)
    {
        for (var i = 0; i < totals.Length; i++)
        {
            var reason = (KernelDropReason)i;
            var label = CollectorMetrics.KernelReasonLabel(reason);
            var isBytes = reason is KernelDropReason.RingBufferFullBytes or KernelDropReason.BeyondCaptureBytes
                or KernelDropReason.NotHttpBytes or KernelDropReason.ReadFailedBytes
                or KernelDropReason.SendfileBytes or KernelDropReason.IovSkipped or KernelDropReason.GoConnNotTcpBytes
                or KernelDropReason.GoBeforeAttachBytes;
            if (isBytes) metrics.KernelDroppedBytes[label].Set(totals[i]);
            if (!isBytes || reason == KernelDropReason.IovSkipped) metrics.KernelDrops[label].Set(totals[i]);
        }
    }

    private static void ConfigureLogging(ILoggingBuilder b, Settings settings)
    {
        b.SetMinimumLevel(LogLevel.Information);
        b.AddFilter("Microsoft", LogLevel.Warning);
        // its start failure (an address in use) is reported as a configuration error, in one line
        b.AddFilter("Microsoft.Extensions.Hosting.Internal.Host", LogLevel.None);
        // logs go to stderr only: stdout carries the messages
        if (settings.LogJson)
            b.AddJsonConsole(o => { o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ"; o.UseUtcTimestamp = true; });
        else
            b.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; o.UseUtcTimestamp = true; });
        b.Services.Configure<ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
    }

    /// <summary>The start-up banner: every setting in effect (secrets masked, see
    /// <see cref="SettingsReader.Describe"/>).</summary>
    private static void LogBanner(ILogger log, Settings s)
    {
        var settings = string.Join(" ", s.Effective.Select(e => $"{e.Name}={Quote(e.Value)}"));
        log.LogInformation("collector starting: pid {Pid}, kernel {Kernel}, node {Node}, settings: {Settings}",
            Environment.ProcessId, KernelRelease(), s.NodeName ?? Environment.MachineName, settings);
    }

    private static string Quote(string v) => v.Length > 0 && !v.Any(char.IsWhiteSpace) && !v.Contains('"') ? v : System.Text.Json.JsonSerializer.Serialize(v);

    private static string KernelRelease() => KernelFeatures.KernelRelease();

    private static string TraceScope(Settings s)
    {
        var only = new List<string>();
        if (s.TracePids.Count > 0) only.Add("pids " + string.Join(",", s.TracePids));
        if (s.TraceComms.Count > 0) only.Add("names " + string.Join(",", s.TraceComms));
        if (only.Count > 0) return "only " + string.Join(" and ", only);
        return s.ProbeAllPid ? "every process" : "processes in containers";
    }

    /// <summary>What the kernel offered and what is attached: one line once the collector is ready.</summary>
    private static void LogKernelFeatures(ILogger log, Settings settings, KernelCapture kernel, TlsProbes tls)
    {
        const string btf = "/sys/kernel/btf/vmlinux";
        log.LogInformation(
            "ready: kernel {Kernel}, BTF {Btf}, BPF ring buffer {RingMb} MiB, {Tracepoints} syscall/sched tracepoints attached, " +
            "{Uprobes} TLS uprobes on {Files} library files, capture plaintext={Plain} tls={Tls}, tracing {Scope}",
            KernelRelease(), File.Exists(btf) ? btf + " present" : "absent", settings.RingBufferMegabytes, kernel.TracepointCount,
            tls.AttachedProbes, tls.AttachedFiles, settings.CaptureAll, settings.CaptureSsl,
            TraceScope(settings));
    }

    internal sealed class ReadinessState
    {
        public volatile bool Ready;
    }

    internal static async Task<WebApplication> StartStatusEndpoint(Settings settings, CollectorMetrics metrics,
        ReadinessState state, ILoggerFactory loggerFactory)
    {
        // An empty builder: no configuration files, so no file watcher. The default builders watch
        // appsettings.json under the content root, the working directory, with inotify over its
        // whole tree: a host install started in / walked every file on the node (minutes, and a
        // watch per directory).
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        builder.WebHost.UseKestrelCore();
        builder.Services.AddRoutingCore();
        builder.Services.AddSingleton(loggerFactory);
        var colon = settings.MetricsBind.LastIndexOf(':');
        var address = IPAddress.Parse(settings.MetricsBind[..colon].Trim('[', ']'));
        var port = int.Parse(settings.MetricsBind[(colon + 1)..]);
        builder.WebHost.ConfigureKestrel(k => k.Listen(address, port));
        var app = builder.Build();
        app.MapGet(HealthPath, () => Results.Text("ok\n"));
        // Ready means capturing. The broker's state is reported, not required: a broker outage must
        // not take the collector out of service (messages wait in the bounded queue meanwhile).
        app.MapGet(ReadyPath, () =>
        {
            var kafka = Volatile.Read(ref metrics.KafkaReachable) switch
            {
                1 => "kafka: reachable",
                0 => "kafka: unreachable",
                _ => "kafka: not configured",
            };
            return state.Ready ? Results.Text($"ready\n{kafka}\n") : Results.Text($"not ready\n{kafka}\n", statusCode: 503);
        });
        app.MapGet(MetricsPath, () => Results.Text(metrics.Render(), "text/plain; version=0.0.4; charset=utf-8"));
        try
        {
            await app.StartAsync();
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
        {
            // the address is taken or not ours: a setting to fix, said in one line (not a stack trace)
            await app.DisposeAsync();
            throw new SettingsException("METRICS_BIND", $"cannot listen on {settings.MetricsBind}: {(e.InnerException ?? e).Message}");
        }
        return app;
    }
}
