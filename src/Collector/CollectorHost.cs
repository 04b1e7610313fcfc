using System.Diagnostics;
using System.Net;
using System.Runtime.InteropServices;
using Collector.Configuration;
using Collector.Connections;
using Collector.Events;
using Collector.Filtering;
using Collector.Http;
using Collector.Kernel;
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

    public static async Task<int> RunAsync(Settings settings)
    {
        using var loggerFactory = LoggerFactory.Create(b => ConfigureLogging(b, settings));
        var log = loggerFactory.CreateLogger("collector");
        var metrics = new CollectorMetrics();
        var state = new ReadinessState();

        ExchangeFilter filter;
        try
        {
            var rules = DiscoveryRules.Parse(settings.DiscoveryConfig);
            if (settings.DiscoveryConfigPath is not null && File.Exists(settings.DiscoveryConfigPath))
                rules = DiscoveryRules.Parse(File.ReadAllText(settings.DiscoveryConfigPath));
            filter = new ExchangeFilter(settings, rules, HeaderValueFilter.Parse(settings.HeaderValueFilter));
        }
        catch (DiscoveryRulesException e)
        {
            Console.Error.WriteLine($"configuration error: AKTO_MODULE_DISCOVERY_CONFIG: {e.Message}");
            return ExitConfigError;
        }
        catch (SettingsException e)
        {
            Console.Error.WriteLine(e.Message);
            return ExitConfigError;
        }

        LogBanner(log, settings);
        using var stop = new CancellationTokenSource();
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });

        var web = await StartStatusEndpoint(settings, metrics, state, loggerFactory);

        IMessageSink sink = new StdoutSink();
        var identity = new AktoIdentity(settings.AccountId, settings.VxlanId, Guid.NewGuid().ToString(), settings.RedactHeaders.ToHashSet());
        var output = new OutputPipeline(filter, sink, metrics, identity, settings.MaxBodyBytes, settings.KafkaMaxMessageBytes,
            loggerFactory.CreateLogger("output"));
        var outputTask = Task.Run(output.RunAsync);

        KernelCapture kernel;
        try
        {
            kernel = new KernelCapture(settings, loggerFactory.CreateLogger("kernel"));
        }
        catch (Exception e) when (e is BpfException or FileNotFoundException or InvalidOperationException or DllNotFoundException)
        {
            log.LogCritical("cannot start kernel capture: {Error}", e.Message);
            await web.StopAsync();
            return ExitKernelError;
        }

        using var kernelLifetime = kernel;
        var limits = new ReassemblyLimits(settings.InactivityThreshold, settings.MaxActiveConnections,
            settings.BufferThresholdBytes, new HttpLimits(settings.MaxHeaderBytes, settings.MaxBodyBytes));
        var table = new ConnectionTable(limits, metrics, output.Enqueue) { Dump = CaptureDump.Open(settings.CaptureDumpPath) };
        using var tls = new TlsProbes(kernel, settings, metrics, loggerFactory.CreateLogger("tls"));
        table.ExecObserver = tls.OnExec;
        using var reader = new RingBufferReader(kernel.EventsMapFd, table, metrics, loggerFactory.CreateLogger("events"));

        var readerStarted = new TaskCompletionSource();
        var readerThread = new Thread(() => ReadEvents(reader, table, settings, stop.Token, readerStarted, log))
        {
            Name = "ring-buffer",
            IsBackground = true,
        };
        readerThread.Start();
        await readerStarted.Task;

        tls.AttachSystemLibraries();
        tls.ScanAll();
        var tlsTask = Task.Run(() => tls.RunAsync(stop.Token));
        state.Ready = true;
        log.LogInformation("ready: {Tracepoints} tracepoints, TLS probes on {Files} library files, ring buffer {Mb} MiB",
            kernel.TracepointCount, tls.AttachedFiles, settings.RingBufferMegabytes);

        var exitCode = 0;
        var lastDrops = new long[(int)KernelDropReason.Count];
        var nextSummary = DateTime.UtcNow.AddMinutes(1);
        long lastSummaryTotal = 0;
        try
        {
            while (!stop.IsCancellationRequested)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(500), stop.Token).ContinueWith(_ => { });
                PublishKernelDrops(kernel.ReadDropCounters(), lastDrops, metrics);
                var rss = Process.GetCurrentProcess().WorkingSet64;
                if (rss > settings.MemoryRestartBytes)
                {
                    log.LogCritical("memory {Rss} MB is over AKTO_MEM_THRESH_RESTART ({Limit} MB): exiting with status {Code} to be restarted",
                        rss >> 20, settings.MemoryRestartBytes >> 20, ExitMemoryThreshold);
                    exitCode = ExitMemoryThreshold;
                    stop.Cancel();
                    break;
                }
                if (DateTime.UtcNow >= nextSummary)
                {
                    nextSummary = DateTime.UtcNow.AddMinutes(1);
                    var total = metrics.KernelDrops.Total + metrics.HttpDrops.Total + metrics.OutputQueueDrops.Value + metrics.GapBytes.Value;
                    if (total != lastSummaryTotal)
                        log.LogWarning("drops in the last minute: kernel {Kernel}, http {Http}, output queue {Output}, gap bytes {Gap}",
                            string.Join(",", metrics.KernelDrops.Series.Select(s => $"{s.Key}={s.Value.Value}")),
                            string.Join(",", metrics.HttpDrops.Series.Select(s => $"{s.Key}={s.Value.Value}")),
                            metrics.OutputQueueDrops.Value, metrics.GapBytes.Value);
                    lastSummaryTotal = total;
                }
            }
        }
        finally
        {
            state.Ready = false;
            log.LogInformation("stopping: detaching probes and flushing what is complete");
            readerThread.Join();
            await tlsTask;
            output.Complete();
            await outputTask;
            var left = await sink.FlushAsync(settings.ShutdownGrace);
            if (left > 0) log.LogWarning("{Count} messages could not be delivered before the grace period ended", left);
            await sink.DisposeAsync();
            await web.StopAsync();
        }
        return exitCode;
    }

    private static void ReadEvents(RingBufferReader reader, ConnectionTable table, Settings settings,
        CancellationToken stop, TaskCompletionSource started, ILogger log)
    {
        started.SetResult();
        var sweepEvery = (long)(settings.PollInterval.TotalSeconds * Stopwatch.Frequency);
        var nextSweep = Stopwatch.GetTimestamp() + sweepEvery;
        try
        {
            while (!stop.IsCancellationRequested)
            {
                reader.Poll(10);
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

    private static void PublishKernelDrops(long[] totals, long[] last, CollectorMetrics metrics)
    {
        for (var i = 0; i < totals.Length; i++)
        {
            var reason = (KernelDropReason)i;
            var label = CollectorMetrics.KernelReasonLabel(reason);
            var isBytes = reason is KernelDropReason.RingBufferFullBytes or KernelDropReason.BeyondCaptureBytes
                or KernelDropReason.NotHttpBytes or KernelDropReason.TlsUnresolvedBytes or KernelDropReason.ReadFailedBytes
                or KernelDropReason.SendfileBytes or KernelDropReason.IovSkipped;
            if (isBytes) metrics.KernelDroppedBytes[label].Set(totals[i]);
            if (!isBytes || reason == KernelDropReason.IovSkipped) metrics.KernelDrops[label].Set(totals[i]);
            last[i] = totals[i];
        }
    }

    private static void ConfigureLogging(ILoggingBuilder b, Settings settings)
    {
        b.SetMinimumLevel(LogLevel.Information);
        b.AddFilter("Microsoft", LogLevel.Warning);
        // logs go to stderr only: stdout carries the messages
        if (settings.LogJson)
            b.AddJsonConsole(o => { o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ"; o.UseUtcTimestamp = true; });
        else
            b.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; o.UseUtcTimestamp = true; });
        b.Services.Configure<ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
    }

    private static void LogBanner(ILogger log, Settings s)
    {
        var masked = s with { KafkaPassword = s.KafkaPassword is null ? null : "***", KafkaUsername = s.KafkaUsername is null ? null : "***" };
        log.LogInformation("collector starting: pid {Pid}, kernel {Kernel}, settings {Settings}",
            Environment.ProcessId, Environment.OSVersion.VersionString, masked.ToString());
    }

    private sealed class ReadinessState
    {
        public volatile bool Ready;
    }

    private static async Task<WebApplication> StartStatusEndpoint(Settings settings, CollectorMetrics metrics,
        ReadinessState state, ILoggerFactory loggerFactory)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(loggerFactory);
        var colon = settings.MetricsBind.LastIndexOf(':');
        var address = IPAddress.Parse(settings.MetricsBind[..colon].Trim('[', ']'));
        var port = int.Parse(settings.MetricsBind[(colon + 1)..]);
        builder.WebHost.ConfigureKestrel(k => k.Listen(address, port));
        var app = builder.Build();
        app.MapGet("/healthz", () => Results.Text("ok\n"));
        app.MapGet("/ready", () => state.Ready ? Results.Text("ready\n") : Results.Text("not ready\n", statusCode: 503));
        app.MapGet("/metrics", () => Results.Text(metrics.Render(), "text/plain; version=0.0.4; charset=utf-8"));
        await app.StartAsync();
        return app;
    }
}
