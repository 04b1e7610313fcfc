using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.Json;
using Collector.Configuration;
using Collector.Metrics;
using Confluent.Kafka;
using Microsoft.Extensions.Logging;

namespace Collector.Output;

/// <summary>Delivers Akto messages to Kafka with the librdkafka bundled with the collector
/// (<see cref="BundledLibrdkafka"/>), driven through its C API (<see cref="RdKafkaProducer"/>).
///
/// Messages first wait in a queue of our own, bounded by KAFKA_QUEUE_MESSAGES and KAFKA_QUEUE_MB
/// (everything not yet acknowledged counts, including what librdkafka holds). Past the bound the
/// oldest waiting messages are shed and counted. librdkafka is fed from that queue through a
/// window of at most half the bound, and only while the broker is reachable: during an outage new
/// messages stay here, where the oldest can be shed, instead of in librdkafka's queue, which would
/// refuse the newest. When the broker returns the queue drains; nothing that was waiting is sent
/// twice (the idempotent producer de-duplicates its own retries).
///
/// While the broker answers and nothing waits here, a message goes from the encoder's buffer
/// straight to librdkafka, which copies it once; only a message that has to wait (an outage, a
/// full window) is copied into the queue here.
///
/// Every message handed to this sink ends in exactly one of the counters delivered, failed, shed,
/// or is still waiting (collector_kafka_waiting_messages), or is reported at shutdown as not
/// flushed.</summary>
public sealed class KafkaSink : IMessageSink
{
    public const string CollectionDetailsHeader = "collection_details";
    public const string KafkaInitMessage = """{"testConnectionString":"kafkaInit"}""";
    /// <summary>Record and batch framing around one message, kept free in the size budget.</summary>
    public const int RecordOverheadBytes = 128;

    private readonly Settings _settings;
    private readonly CollectorMetrics _metrics;
    private readonly ILogger _log;
    private readonly string _daemonId;
    private readonly RdKafkaProducer _producer;

    private readonly object _gate = new();
    private readonly Queue<Pending> _waiting = new();
    private long _waitingBytes;
    private int _inFlight;
    private long _inFlightBytes;
    private readonly int _boundMessages;
    private readonly long _boundBytes;
    private readonly int _windowMessages;
    private readonly long _windowBytes;

    private volatile bool _reachable;
    private bool _initSent;
    private volatile bool _flushing;
    private volatile bool _disposed;
    private int _probeRequested;
    private int _heartbeatInFlight;
    private readonly SemaphoreSlim _probeSignal = new(0);
    private readonly CancellationTokenSource _stop = new();
    private readonly Thread _probeThread;
    private readonly Task _heartbeatTask;
    private readonly Dictionary<ErrorCode, DateTime> _lastErrorLog = new();

    // the per-message counters, looked up once
    private readonly Counter _queued, _delivered, _shed;

    private readonly record struct Pending(byte[] Value, byte[]? Details, int Size);

    // The opaque of a control message (negative); a traffic message's opaque is its size (> 0).
    private const long InitOpaque = -1, HeartbeatOpaque = -2;

    public KafkaSink(Settings settings, CollectorMetrics metrics, string daemonId, ILogger log)
    {
        _settings = settings;
        _metrics = metrics;
        _daemonId = daemonId;
        _log = log;
        _boundMessages = settings.KafkaQueueMessages;
        _boundBytes = (long)settings.KafkaQueueMegabytes * 1024 * 1024;
        _windowMessages = Math.Max(1, _boundMessages / 2);
        _windowBytes = Math.Max(1, _boundBytes / 2);
        _queued = metrics.KafkaMessages["queued"];
        _delivered = metrics.KafkaMessages["delivered"];
        _shed = metrics.KafkaMessages["shed"];
        var library = BundledLibrdkafka.Load();
        _log.LogInformation("kafka: librdkafka {Version} loaded from {Path} (librdkafka.redist {Expected})",
            library.Version, library.Path, BundledLibrdkafka.ExpectedVersion);
        metrics.KafkaReachable = 0;

        var config = ProducerConfig(settings, _windowMessages, _windowBytes);
        _producer = new RdKafkaProducer(config, settings.KafkaTopic, CollectionDetailsHeader,
            OnDelivery, OnError, OnStatistics, OnLibraryLog);

        _log.LogInformation("kafka: producing to {Brokers}, topic {Topic}, heartbeats on {HeartbeatTopic} every {Heartbeat}s; " +
                            "queue bound {Messages} messages / {Mb} MB; producer config {Config}",
            settings.KafkaBrokers, settings.KafkaTopic, settings.HeartbeatTopic, settings.HeartbeatInterval.TotalSeconds,
            _boundMessages, settings.KafkaQueueMegabytes, Describe(config));
        _log.LogInformation("kafka: broker not reachable yet; start-up does not wait, messages queue until it answers");

        _probeThread = new Thread(ProbeLoop) { Name = "kafka-probe", IsBackground = true };
        _probeThread.Start();
        _heartbeatTask = Task.Run(HeartbeatLoop);
    }

    /// <summary>librdkafka settings from the collector's settings. Everything the broker sees is
    /// decided here (and logged at start, secrets masked).</summary>
    public static Dictionary<string, string> ProducerConfig(Settings s, int windowMessages, long windowBytes)
    {
        var lingerMs = (long)s.BatchTime.TotalMilliseconds;
        var c = new Dictionary<string, string>
        {
            ["bootstrap.servers"] = s.KafkaBrokers ?? throw new ArgumentException("no brokers configured"),
            ["client.id"] = "akto-traffic-collector" + (s.PodName is null ? "" : "-" + s.PodName),
            ["acks"] = "all",
            ["enable.idempotence"] = "true",
            ["compression.type"] = s.KafkaCompression,
            ["compression.level"] = s.KafkaCompressionLevel.ToString(CultureInfo.InvariantCulture),
            ["linger.ms"] = lingerMs.ToString(CultureInfo.InvariantCulture),
            ["batch.num.messages"] = s.BatchSize.ToString(CultureInfo.InvariantCulture),
            ["message.max.bytes"] = s.KafkaMaxMessageBytes.ToString(CultureInfo.InvariantCulture),
            // a message handed over waits for the broker this long before it counts as failed; the
            // bounded queue in front (not this timeout) is what limits memory during an outage
            ["message.timeout.ms"] = Math.Max(300_000L, 2 * lingerMs + 60_000).ToString(CultureInfo.InvariantCulture),
            ["message.send.max.retries"] = int.MaxValue.ToString(CultureInfo.InvariantCulture),
            ["retry.backoff.ms"] = "250",
            ["reconnect.backoff.ms"] = "250",
            ["reconnect.backoff.max.ms"] = "3000",
            ["socket.keepalive.enable"] = "true",
            ["statistics.interval.ms"] = "1000",
            // the window that feeds librdkafka, plus room for the connection test and heartbeats
            ["queue.buffering.max.messages"] = Math.Min(10_000_000L, (long)windowMessages + 1000).ToString(CultureInfo.InvariantCulture),
            ["queue.buffering.max.kbytes"] = Math.Min(2_097_151L, windowBytes / 1024 + 4096).ToString(CultureInfo.InvariantCulture),
        };
        var sasl = s.KafkaAuth;
        c["security.protocol"] = (s.KafkaUseTls, sasl) switch
        {
            (true, true) => "sasl_ssl",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            _ => "plaintext",
        };
        if (s.KafkaUseTls)
        {
            if (File.Exists(s.KafkaCaCertPath)) c["ssl.ca.location"] = s.KafkaCaCertPath;
            c["enable.ssl.certificate.verification"] = s.KafkaInsecureSkipVerify ? "false" : "true";
            c["ssl.endpoint.identification.algorithm"] = s.KafkaInsecureSkipVerify ? "none" : "https";
        }
        if (sasl)
        {
            c["sasl.mechanisms"] = "PLAIN";
            c["sasl.username"] = s.KafkaUsername!;
            c["sasl.password"] = s.KafkaPassword!;
        }
        return c;
    }

    public static string Describe(IReadOnlyDictionary<string, string> config) =>
        string.Join(" ", config.Where(kv => !kv.Key.StartsWith("dotnet.", StringComparison.Ordinal))
            .Select(kv => $"{kv.Key}={(kv.Key is "sasl.password" or "sasl.username" ? "***" : kv.Value)}"));

    public bool? Reachable => _reachable;

    public void Publish(ReadOnlySpan<byte> message, ReadOnlySpan<byte> collectionDetails)
    {
        var size = message.Length + (collectionDetails.IsEmpty ? 0 : collectionDetails.Length + CollectionDetailsHeader.Length);
        _queued.Increment();
        lock (_gate)
        {
            // the usual case: straight from the encoder's buffer, no copy of ours
            if (_waiting.Count == 0 && CanHandOverLocked(size))
            {
                switch (HandOverLocked(message, collectionDetails, size))
                {
                    case HandOver.Done:
                    case HandOver.Failed:
                        PublishGauge();
                        return;
                    case HandOver.Full:
                        break; // librdkafka's queue is full: this one waits here like the rest
                }
            }
            _waiting.Enqueue(new Pending(message.ToArray(), collectionDetails.IsEmpty ? null : collectionDetails.ToArray(), size));
            _waitingBytes += size;
            ShedOverBound();
            PumpLocked();
            PublishGauge();
        }
    }

    public void Idle()
    {
        // librdkafka sends a batch when it is full or linger.ms has passed: nothing to push here
    }

    /// <summary>Keeps everything not yet acknowledged within the bound: the oldest waiting messages go.</summary>
    private void ShedOverBound()
    {
        while (_waiting.Count > 0 &&
               (_waiting.Count + _inFlight > _boundMessages || _waitingBytes + _inFlightBytes > _boundBytes))
        {
            var old = _waiting.Dequeue();
            _waitingBytes -= old.Size;
            _shed.Increment();
        }
    }

    private void Pump()
    {
        lock (_gate)
        {
            PumpLocked();
            PublishGauge();
        }
    }

    /// <summary>Whether a message of this size may go to librdkafka now: the broker is reachable
    /// (or we are flushing at shutdown) and the window has room.</summary>
    private bool CanHandOverLocked(int size) =>
        !_disposed && (_reachable || _flushing) && _inFlight < _windowMessages && (_inFlight == 0 || _inFlightBytes + size <= _windowBytes);

    private enum HandOver { Done, Failed, Full }

    /// <summary>One message to librdkafka (which copies it); its size is its opaque, which comes
    /// back with its delivery report.</summary>
    private HandOver HandOverLocked(ReadOnlySpan<byte> value, ReadOnlySpan<byte> details, int size)
    {
        try
        {
            _producer.Produce(value, details, size);
        }
        catch (KafkaException e) when (e.Error.Code == ErrorCode.Local_QueueFull)
        {
            return HandOver.Full; // try again on the next delivery report
        }
        catch (KafkaException e)
        {
            CountFailure(e.Error);
            return HandOver.Failed;
        }
        _inFlight++;
        _inFlightBytes += size;
        return HandOver.Done;
    }

    /// <summary>Hands waiting messages to librdkafka while it may take them.</summary>
    private void PumpLocked()
    {
        while (_waiting.Count > 0 && CanHandOverLocked(_waiting.Peek().Size))
        {
            var item = _waiting.Peek();
            if (HandOverLocked(item.Value, item.Details, item.Size) == HandOver.Full) return;
            _waiting.Dequeue();
            _waitingBytes -= item.Size;
        }
    }

    /// <summary>The reports of one produce request (or part of one): counted, and the window
    /// refilled, under one lock.</summary>
    private void OnDelivery(ReadOnlySpan<RdKafkaProducer.Delivery> deliveries)
    {
        int traffic = 0, delivered = 0;
        long bytes = 0;
        foreach (var d in deliveries)
        {
            if (d.Opaque < 0)
            {
                OnControlDelivery(d.Opaque == InitOpaque ? "init" : "heartbeat", d.Error);
                continue;
            }
            traffic++;
            bytes += d.Opaque;
            if (d.Error != ErrorCode.NoError) CountFailure(new Error(d.Error, RdKafkaProducer.Reason(d.Error)));
            else delivered++;
        }
        if (traffic == 0) return;
        _delivered.Add(delivered);
        lock (_gate)
        {
            _inFlight -= traffic;
            _inFlightBytes -= bytes;
            PumpLocked();
            PublishGauge();
        }
    }

    private void CountFailure(Error error)
    {
        _metrics.KafkaMessages["failed"].Increment();
        _metrics.KafkaFailures[error.Code.ToString()].Increment();
        if (ShouldLog(error.Code))
            _log.LogWarning("kafka: a message could not be delivered: {Code} {Reason}", error.Code, error.Reason);
    }

    private void PublishGauge() =>
        Interlocked.Exchange(ref _metrics.KafkaWaiting, _waiting.Count + _inFlight);

    /// <summary>Waiting messages, not yet acknowledged by the broker (ours and librdkafka's).</summary>
    public long Waiting
    {
        get { lock (_gate) return _waiting.Count + _inFlight; }
    }

    // ---- reachability ----

    private void SetReachable(bool reachable, string why)
    {
        lock (_gate)
        {
            if (_reachable == reachable) return;
            _reachable = reachable;
            _metrics.KafkaReachable = reachable ? 1 : 0;
        }
        if (reachable)
        {
            _log.LogInformation("kafka: broker reachable at {Brokers}; {Waiting} messages waiting are being sent", _settings.KafkaBrokers, Waiting);
            if (!_initSent)
            {
                _initSent = true;
                ProduceControl(_settings.KafkaTopic, Encoding.UTF8.GetBytes(KafkaInitMessage), "init");
                SendHeartbeat();
            }
            Pump();
        }
        else
        {
            _log.LogWarning("kafka: broker unreachable ({Why}); capture goes on, messages wait in a queue of at most {Messages} messages / {Mb} MB, the oldest are shed past it",
                why, _boundMessages, _settings.KafkaQueueMegabytes);
        }
    }

    /// <summary>librdkafka's view, every statistics.interval.ms: when no broker connection is up,
    /// ask the probe to check (an idle connection the broker closed is not an outage).</summary>
    private void OnStatistics(string json)
    {
        var anyUp = false;
        try
        {
            using var doc = JsonDocument.Parse(json);
            if (doc.RootElement.TryGetProperty("brokers", out var brokers))
                foreach (var b in brokers.EnumerateObject())
                    if (b.Value.TryGetProperty("state", out var st) && st.GetString() == "UP") { anyUp = true; break; }
        }
        catch (JsonException e)
        {
            _log.LogDebug("kafka: statistics not parsed: {Error}", e.Message);
            return;
        }
        if (!anyUp && _reachable) RequestProbe();
    }

    private void RequestProbe()
    {
        if (Interlocked.Exchange(ref _probeRequested, 1) == 0) _probeSignal.Release();
    }

    /// <summary>A metadata request answered by a broker is the proof that it is reachable; while it
    /// is not, one is tried every second (which also makes librdkafka reconnect).</summary>
    private void ProbeLoop()
    {
        while (!_stop.IsCancellationRequested)
        {
            var requested = Interlocked.Exchange(ref _probeRequested, 0) == 1;
            if (!_reachable || requested)
            {
                bool ok;
                string why;
                if (_disposed) return;
                var (brokers, error) = _producer.Metadata(TimeSpan.FromSeconds(3));
                ok = error == ErrorCode.NoError && brokers > 0;
                why = ok ? "metadata answered" : error == ErrorCode.NoError ? "metadata without brokers" : RdKafkaProducer.Reason(error);
                if (_stop.IsCancellationRequested) return;
                SetReachable(ok, why);
            }
            try
            {
                _probeSignal.Wait(TimeSpan.FromSeconds(1), _stop.Token);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private void OnError(ErrorCode code, string reason, bool fatal)
    {
        if (fatal)
        {
            _log.LogCritical("kafka: fatal producer error {Code}: {Reason}; messages can no longer be delivered", code, reason);
            return;
        }
        if (code is ErrorCode.Local_AllBrokersDown or ErrorCode.Local_Transport) RequestProbe();
        if (ShouldLog(code))
            _log.LogWarning("kafka: {Code}: {Reason}", code, reason);
    }

    /// <summary>The same error at most once a minute in the log (the counters have every one).</summary>
    private bool ShouldLog(ErrorCode code)
    {
        lock (_lastErrorLog)
        {
            var now = DateTime.UtcNow;
            if (_lastErrorLog.TryGetValue(code, out var last) && now - last < TimeSpan.FromMinutes(1)) return false;
            _lastErrorLog[code] = now;
            return true;
        }
    }

    private void OnLibraryLog(int level, string facility, string message) =>
        _log.LogDebug("librdkafka {Level} {Facility}: {Message}", (SyslogLevel)level, facility, message);

    // ---- control messages: connection test and heartbeats ----

    private void ProduceControl(string topic, byte[] value, string kind)
    {
        try
        {
            _producer.Produce(topic, value, kind == "init" ? InitOpaque : HeartbeatOpaque);
        }
        catch (KafkaException e)
        {
            if (kind == "heartbeat") Interlocked.Exchange(ref _heartbeatInFlight, 0);
            _metrics.KafkaControlMessages[kind + "_failed"].Increment();
            _log.LogWarning("kafka: {Kind} message not produced: {Code} {Reason}", kind, e.Error.Code, e.Error.Reason);
        }
    }

    private void OnControlDelivery(string kind, ErrorCode error)
    {
        if (kind == "heartbeat") Interlocked.Exchange(ref _heartbeatInFlight, 0);
        if (error != ErrorCode.NoError)
        {
            _metrics.KafkaControlMessages[kind + "_failed"].Increment();
            if (ShouldLog(error))
                _log.LogWarning("kafka: {Kind} message not delivered: {Code} {Reason}", kind, error, RdKafkaProducer.Reason(error));
        }
        else _metrics.KafkaControlMessages[kind + "_delivered"].Increment();
    }

    /// <summary>The heartbeat the processor reads (Akto's module-info view). Every value is a
    /// string: the processor parses timestamp with Integer.parseInt of the value's text.</summary>
    public static byte[] HeartbeatJson(string daemonId, string podName, string? nodeName, long unixSeconds, string imageVersion)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteString("type", "heartbeat");
            w.WriteString("daemonId", daemonId);
            w.WriteString("daemonPodName", podName);
            if (nodeName is not null) w.WriteString("nodeName", nodeName);
            w.WriteString("timestamp", unixSeconds.ToString(CultureInfo.InvariantCulture));
            w.WriteString("moduleType", "TRAFFIC_COLLECTOR");
            w.WriteString("imageVersion", imageVersion);
            w.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    public static string ImageVersion { get; } =
        typeof(KafkaSink).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? typeof(KafkaSink).Assembly.GetName().Version?.ToString() ?? "unknown";

    /// <summary>One heartbeat at a time, only while the broker answers: a heartbeat that waited out
    /// an outage would report a stale time as if it were current.</summary>
    private void SendHeartbeat()
    {
        if (!_reachable || _flushing || _disposed) return;
        if (Interlocked.CompareExchange(ref _heartbeatInFlight, 1, 0) != 0) return;
        var body = HeartbeatJson(_daemonId, _settings.PodName ?? Environment.MachineName, _settings.NodeName,
            DateTimeOffset.UtcNow.ToUnixTimeSeconds(), ImageVersion);
        ProduceControl(_settings.HeartbeatTopic, body, "heartbeat");
    }

    private async Task HeartbeatLoop()
    {
        var random = new Random();
        while (!_stop.IsCancellationRequested)
        {
            // ±10 % jitter, so that a DaemonSet's collectors do not beat in step
            var delay = _settings.HeartbeatInterval * (0.9 + 0.2 * random.NextDouble());
            try
            {
                await Task.Delay(delay, _stop.Token);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            SendHeartbeat();
        }
    }

    // ---- shutdown ----

    public Task<long> FlushAsync(TimeSpan grace) => Task.Run(() =>
    {
        _flushing = true; // hand over everything, reachable or not: librdkafka retries until the end
        var deadline = DateTime.UtcNow + grace;
        long left;
        while (true)
        {
            Pump();
            left = Waiting;
            var remaining = deadline - DateTime.UtcNow;
            if (left == 0 || remaining <= TimeSpan.Zero) break;
            // rd_kafka_flush sends lingering batches at once instead of waiting out linger.ms
            _producer.Flush(remaining < TimeSpan.FromMilliseconds(200) ? remaining : TimeSpan.FromMilliseconds(200));
        }
        var rest = deadline - DateTime.UtcNow;
        if (left == 0 && rest > TimeSpan.Zero)
            _producer.Flush(rest < TimeSpan.FromSeconds(1) ? rest : TimeSpan.FromSeconds(1)); // a connection test or heartbeat still on its way
        _log.LogInformation("kafka: flush done: {Delivered} delivered, {Failed} failed, {Shed} shed in total; {Left} not flushed within {Grace}s",
            _metrics.KafkaMessages["delivered"].Value, _metrics.KafkaMessages["failed"].Value, _metrics.KafkaMessages["shed"].Value,
            left, grace.TotalSeconds);
        return left;
    });

    public async ValueTask DisposeAsync()
    {
        if (_disposed) return;
        _stop.Cancel();
        lock (_gate) _disposed = true;
        _probeThread.Join();
        await _heartbeatTask;
        _producer.Dispose();
        _stop.Dispose();
        _probeSignal.Dispose();
    }
}
