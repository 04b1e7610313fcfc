using System.Globalization;

namespace Collector.Configuration;

/// <summary>Every setting of the collector, read once at start-up from the environment.
/// Names, meanings and defaults follow the Akto collector's (shared/spec/configuration.md) so
/// that existing manifests keep working; the rest are ours and documented in the README.</summary>
public sealed record Settings
{
    // Kafka
    public string? KafkaBrokers { get; init; }
    public string KafkaTopic { get; init; } = "akto.api.logs";
    public int BatchSize { get; init; } = 100;
    public TimeSpan BatchTime { get; init; } = TimeSpan.FromSeconds(10);
    public TimeSpan PollInterval { get; init; } = TimeSpan.FromSeconds(0.5);
    public bool KafkaUseTls { get; init; }
    public string KafkaCaCertPath { get; init; } = "./ca.crt";
    public bool KafkaInsecureSkipVerify { get; init; }
    public bool KafkaAuth { get; init; }
    public string? KafkaUsername { get; init; }
    public string? KafkaPassword { get; init; }
    public int KafkaQueueMessages { get; init; } = 100_000;
    public int KafkaQueueMegabytes { get; init; } = 256;
    public int KafkaMaxMessageBytes { get; init; } = 1_000_000;
    public string KafkaCompression { get; init; } = "lz4";
    /// <summary>-1: the codec's own default level.</summary>
    public int KafkaCompressionLevel { get; init; } = -1;
    public TimeSpan ShutdownGrace { get; init; } = TimeSpan.FromSeconds(25);
    public string HeartbeatTopic { get; init; } = "akto.daemonset.producer.heartbeats";
    public TimeSpan HeartbeatInterval { get; init; } = TimeSpan.FromSeconds(60);

    // Filters
    public string? DiscoveryConfig { get; init; }
    public string? DiscoveryConfigPath { get; init; }
    public string? HeaderValueFilter { get; init; }
    public bool DisableEgress { get; init; }
    public bool IgnoreIpTraffic { get; init; }
    public bool IgnoreCloudMetadataCalls { get; init; }
    public IReadOnlyList<string> RedactHeaders { get; init; } = [];

    // Reassembly bounds
    public TimeSpan InactivityThreshold { get; init; } = TimeSpan.FromSeconds(30);
    public int MaxActiveConnections { get; init; } = 4096;
    public long BufferThresholdBytes { get; init; } = 600L * 1024 * 1024;
    public long MemoryRestartBytes { get; init; } = 800L * 1024 * 1024;
    public int MaxHeaderBytes { get; init; } = 64 * 1024;
    public int MaxBodyBytes { get; init; } = 256 * 1024;

    // Capture
    public bool CaptureAll { get; init; } = true;
    public bool CaptureSsl { get; init; } = true;
    public TimeSpan UprobePollInterval { get; init; } = TimeSpan.FromMinutes(5);
    public bool ProbeAllPid { get; init; }
    public IReadOnlyList<int> TracePids { get; init; } = [];
    public IReadOnlyList<string> TraceComms { get; init; } = [];
    public int RingBufferMegabytes { get; init; } = 16;
    /// <summary>The nice value (-20..19) of the ring buffer's reader, and of start-up.</summary>
    public int CaptureNice { get; init; } = -10;
    public int ConnectionMapEntries { get; init; } = 65536;
    public int CaptureChunkBytes { get; init; } = 16384;
    public int CaptureChunksPerCall { get; init; } = 8;
    public string BpfObjectPath { get; init; } = Path.Combine(AppContext.BaseDirectory, "collector.bpf.o");
    /// <summary>Kernel features treated as absent though the kernel has them (tests of the older
    /// kernels' paths on a new one; a way around a kernel that misreports one).</summary>
    public IReadOnlySet<string> BpfFeaturesOff { get; init; } = new HashSet<string>();
    public string HostProc { get; init; } = "/proc";
    /// <summary>Debug only: append every kernel event to this file as JSON lines (off when unset).</summary>
    public string? CaptureDumpPath { get; init; }

    // Identity and output
    public string AccountId { get; init; } = "1000000";
    public string VxlanId { get; init; } = "0";
    public string? MongoConnection { get; init; }
    public TimeSpan MongoRefreshInterval { get; init; } = TimeSpan.FromSeconds(120);
    public TimeSpan MongoTimeout { get; init; } = TimeSpan.FromSeconds(10);
    public string MetricsBind { get; init; } = "0.0.0.0:9176";
    public bool LogJson { get; init; }
    /// <summary>off, default, or the path of a policy file (Sensitive/SensitivePolicy.cs).</summary>
    public string SensitiveDataPolicy { get; init; } = "off";
    public string? SensitiveMaskKey { get; init; }
    public int SensitiveMetricsMaxSeries { get; init; } = 500;
    public string? NodeName { get; init; }
    public string? PodName { get; init; }

    /// <summary>Every variable of <see cref="SettingsReader.Variables"/> with the value in effect
    /// (as set, or the default), secrets masked: the start-up banner prints this.</summary>
    public IReadOnlyList<(string Name, string Value)> Effective { get; init; } = [];

    /// <summary>The effective settings, secrets masked (a record's default ToString would print
    /// KAFKA_PASSWORD).</summary>
    public override string ToString() =>
        "Settings { " + string.Join(", ", Effective.Select(e => $"{e.Name}={e.Value}")) + " }";
}

/// <summary>A setting that does not parse: start-up stops with this one line.</summary>
public sealed class SettingsException(string variable, string problem)
    : Exception($"configuration error: {variable}: {OneLine(problem)}")
{
    public string Variable { get; } = variable;

    /// <summary>A value echoed in the message cannot break it over several lines.</summary>
    private static string OneLine(string s) => s.Replace("\r", "\\r").Replace("\n", "\\n");
}

public static class SettingsReader
{
    /// <summary>Every variable the collector reads, with its default, for --help and the README.</summary>
    public static readonly IReadOnlyList<(string Name, string Default, string Meaning)> Variables =
    [
        ("AKTO_KAFKA_BROKER_MAL", "unset", "Kafka bootstrap servers (host:port[,host:port]); wins over AKTO_KAFKA_BROKER_URL"),
        ("AKTO_KAFKA_BROKER_URL", "unset", "Kafka bootstrap servers; unset: exchanges go to stdout as JSON lines"),
        ("AKTO_KAFKA_TOPIC_NAME", "akto.api.logs", "topic for traffic messages"),
        ("AKTO_TRAFFIC_BATCH_SIZE", "100", "messages per producer batch"),
        ("AKTO_TRAFFIC_BATCH_TIME_SECS", "10", "longest wait (s) before a partial batch is sent"),
        ("KAFKA_POLL_INTERVAL", "0.5", "seconds between passes that flush finished or idle connections"),
        ("USE_TLS", "false", "TLS to the broker"),
        ("TLS_CA_CERT_PATH", "./ca.crt", "CA certificate for TLS to the broker"),
        ("INSECURE_SKIP_VERIFY", "false", "do not verify the broker's certificate"),
        ("IS_AUTH_IMPLEMENTED", "false", "SASL/PLAIN to the broker"),
        ("KAFKA_USERNAME", "unset", "SASL/PLAIN user name"),
        ("KAFKA_PASSWORD", "unset", "SASL/PLAIN password"),
        ("KAFKA_QUEUE_MESSAGES", "100000", "messages waiting for the broker before the oldest are shed"),
        ("KAFKA_QUEUE_MB", "256", "MB waiting for the broker before the oldest are shed"),
        ("KAFKA_MAX_MESSAGE_BYTES", "1000000", "largest message produced; bodies are cut to fit"),
        ("KAFKA_COMPRESSION", "lz4", "compression of producer batches: none, gzip, snappy, lz4 or zstd"),
        ("KAFKA_COMPRESSION_LEVEL", "-1", "the codec's level (-1: its default; gzip 0-9, lz4 0-12, zstd 1-22; snappy and none have none)"),
        ("SHUTDOWN_GRACE_SECS", "25", "seconds to flush on SIGTERM before exiting"),
        ("AKTO_HEARTBEAT_TOPIC", "akto.daemonset.producer.heartbeats", "topic for heartbeats"),
        ("AKTO_HEARTBEAT_INTERVAL_SECS", "60", "seconds between heartbeats"),
        ("AKTO_MODULE_DISCOVERY_CONFIG", "unset", "JSON rules: which requests to keep, by request header"),
        ("AKTO_MODULE_DISCOVERY_CONFIG_PATH", "unset", "file with the same rules, reloaded when it changes"),
        ("AKTO_HEADER_VALUE_FILTER", "unset", "JSON object header→value: keep a request when any listed header has the listed value"),
        ("TRAFFIC_DISABLE_EGRESS", "false", "drop outbound traffic (the traced process is the client)"),
        ("AKTO_IGNORE_IP_TRAFFIC", "false", "drop requests whose Host is empty or an IP literal"),
        ("AKTO_IGNORE_CLOUD_METADATA_CALLS", "false", "drop requests to 169.254.169.254"),
        ("REDACT_HEADERS", "unset", "comma-separated header names whose values are replaced before sending"),
        ("TRAFFIC_INACTIVITY_THRESHOLD", "30", "seconds a connection may be idle before it is flushed and forgotten"),
        ("TRAFFIC_MAX_ACTIVE_CONN", "4096", "connections tracked at once in user space"),
        ("TRAFFIC_BUFFER_THRESHOLD", "600", "MB of buffered, unpaired traffic; past it the oldest is shed"),
        ("AKTO_MEM_THRESH_RESTART", "800", "MB of process memory; past it the collector exits with status 3"),
        ("HTTP_MAX_HEADER_BYTES", "65536", "largest header block; a larger message is counted and skipped"),
        ("HTTP_MAX_BODY_BYTES", "262144", "body bytes kept per message; the cut is marked"),
        ("CAPTURE_ALL", "true", "capture plaintext socket traffic"),
        ("CAPTURE_SSL", "true", "capture TLS plaintext at the TLS libraries"),
        ("UPROBE_POLL_INTERVAL", "5", "minutes between full re-scans of processes for TLS libraries"),
        ("PROBE_ALL_PID", "false", "also trace processes outside containers (host install)"),
        ("TRACE_PIDS", "unset", "only trace these process ids (comma-separated)"),
        ("TRACE_COMMS", "unset", "only trace these process names (comma-separated, at most 8)"),
        ("RING_BUFFER_MB", "16", "size of the kernel ring buffer (power of two)"),
        ("CAPTURE_NICE", "-10", "nice value (-20..19) of the thread that reads the ring buffer, and of the whole collector until ready: ahead of its other threads (JIT, Kafka) and of processes in the same CPU cgroup, so that a busy node does not overflow the ring; 0 leaves every thread at the process's own"),
        ("CONN_MAP_ENTRIES", "65536", "connections tracked at once in the kernel"),
        ("CAPTURE_CHUNK_BYTES", "16384", "payload bytes per kernel event (at most 16384)"),
        ("CAPTURE_CHUNKS_PER_CALL", "8", "kernel events per syscall (8 × 16 KiB covers curl's 100 KiB reads); the rest of the call is a counted gap"),
        ("BPF_OBJECT_PATH", "collector.bpf.o beside the binary", "the compiled eBPF object"),
        ("BPF_FEATURES_OFF", "unset", "kernel features to treat as absent (comma-separated: " + string.Join(", ", Kernel.KernelFeatures.Names) + "); for tests and broken kernels"),
        ("HOST_PROC", "/proc", "the host's /proc (mounted elsewhere in a container)"),
        ("CAPTURE_DUMP_PATH", "unset", "debug: append every kernel event (payloads in base64) to this file as JSON lines; for bug reports and the test corpus"),
        ("AKTO_ACCOUNT_ID", "1000000", "the akto_account_id field"),
        ("AKTO_VXLAN_ID", "0", "the akto_vxlan_id field (digits)"),
        ("AKTO_MONGO_CONN", "unset", "MongoDB of Akto's processor: the header-value filter is read from accounts_settings.filterHeaderValueMap (wins over AKTO_HEADER_VALUE_FILTER once read)"),
        ("AKTO_MONGO_REFRESH_SECS", "120", "seconds between reads of accounts_settings"),
        ("AKTO_MONGO_TIMEOUT_SECS", "10", "longest a read of accounts_settings may take (connecting included)"),
        ("METRICS_BIND", "0.0.0.0:9176", "address of /metrics, /ready and /healthz"),
        ("LOG_FORMAT", "text", "text or json"),
        ("SENSITIVE_DATA_POLICY", "off", "sensitive-data classification: off, default (every built-in category, action report) or the path of a policy file (YAML or JSON), reloaded when it changes"),
        ("SENSITIVE_DATA_MASK_KEY", "unset", "secret of the keyed hash (HMAC-SHA256) that masks values (at least 16 characters); needed when the policy masks with hmac"),
        ("SENSITIVE_METRICS_MAX_SERIES", "500", "most collector_sensitive_findings_total series; past it new endpoints count under endpoint=\"_overflow\""),
        ("NODE_NAME", "unset", "the node, for heartbeats and logs (downward API)"),
        ("POD_NAME", "unset", "the pod, for heartbeats and logs (downward API)"),
    ];

    /// <summary>Variables whose values are never printed, only whether they are set. Names with
    /// PASSWORD, SECRET or TOKEN in them are masked too.</summary>
    public static readonly IReadOnlySet<string> Secrets = new HashSet<string>(StringComparer.Ordinal)
        { "KAFKA_USERNAME", "KAFKA_PASSWORD", "AKTO_MONGO_CONN", "SENSITIVE_DATA_MASK_KEY" };

    public const string Masked = "***";

    public static bool IsSecret(string name) =>
        Secrets.Contains(name) || name.Contains("PASSWORD", StringComparison.Ordinal) ||
        name.Contains("SECRET", StringComparison.Ordinal) || name.Contains("TOKEN", StringComparison.Ordinal);

    /// <summary>Each known variable as it is in effect: its value when set (masked when secret),
    /// else its default.</summary>
    public static IReadOnlyList<(string Name, string Value)> Describe(IReadOnlyDictionary<string, string?> env)
    {
        var list = new List<(string, string)>(Variables.Count);
        foreach (var (name, dflt, _) in Variables)
        {
            var set = env.TryGetValue(name, out var v) && !string.IsNullOrWhiteSpace(v);
            list.Add((name, !set ? dflt : IsSecret(name) ? Masked : v!.Trim()));
        }
        return list;
    }

    public static Settings Read(IReadOnlyDictionary<string, string?> env)
    {
        string? Get(string name) => env.TryGetValue(name, out var v) && !string.IsNullOrWhiteSpace(v) ? v.Trim() : null;

        var d = new Settings();
        var brokers = Get("AKTO_KAFKA_BROKER_MAL") ?? Get("AKTO_KAFKA_BROKER_URL");
        if (brokers is not null)
            ValidateBrokers(Get("AKTO_KAFKA_BROKER_MAL") is not null ? "AKTO_KAFKA_BROKER_MAL" : "AKTO_KAFKA_BROKER_URL", brokers);

        var s = new Settings
        {
            KafkaBrokers = brokers,
            KafkaTopic = Topic(Get, "AKTO_KAFKA_TOPIC_NAME", d.KafkaTopic),
            BatchSize = Int(Get, "AKTO_TRAFFIC_BATCH_SIZE", d.BatchSize, 1, 1_000_000),
            // librdkafka's linger.ms stops at 900 000
            BatchTime = Seconds(Get, "AKTO_TRAFFIC_BATCH_TIME_SECS", d.BatchTime, allowFraction: false, max: 900),
            PollInterval = Seconds(Get, "KAFKA_POLL_INTERVAL", d.PollInterval, allowFraction: true),
            KafkaUseTls = Bool(Get, "USE_TLS"),
            KafkaCaCertPath = Get("TLS_CA_CERT_PATH") ?? d.KafkaCaCertPath,
            KafkaInsecureSkipVerify = Bool(Get, "INSECURE_SKIP_VERIFY"),
            KafkaAuth = Bool(Get, "IS_AUTH_IMPLEMENTED"),
            KafkaUsername = Get("KAFKA_USERNAME"),
            KafkaPassword = Get("KAFKA_PASSWORD"),
            KafkaQueueMessages = Int(Get, "KAFKA_QUEUE_MESSAGES", d.KafkaQueueMessages, 1, int.MaxValue),
            KafkaQueueMegabytes = Int(Get, "KAFKA_QUEUE_MB", d.KafkaQueueMegabytes, 1, 1_000_000),
            KafkaMaxMessageBytes = Int(Get, "KAFKA_MAX_MESSAGE_BYTES", d.KafkaMaxMessageBytes, 10_000, 1_000_000_000),
            KafkaCompression = Get("KAFKA_COMPRESSION")?.ToLowerInvariant() is { } codec
                ? (codec is "none" or "gzip" or "snappy" or "lz4" or "zstd" ? codec
                    : throw new SettingsException("KAFKA_COMPRESSION", $"'{codec}' is not one of none, gzip, snappy, lz4, zstd"))
                : d.KafkaCompression,
            KafkaCompressionLevel = Int(Get, "KAFKA_COMPRESSION_LEVEL", d.KafkaCompressionLevel, -1, 22),
            ShutdownGrace = Seconds(Get, "SHUTDOWN_GRACE_SECS", d.ShutdownGrace, allowFraction: true),
            HeartbeatTopic = Topic(Get, "AKTO_HEARTBEAT_TOPIC", d.HeartbeatTopic),
            HeartbeatInterval = Seconds(Get, "AKTO_HEARTBEAT_INTERVAL_SECS", d.HeartbeatInterval, allowFraction: true),
            DiscoveryConfig = Get("AKTO_MODULE_DISCOVERY_CONFIG"),
            DiscoveryConfigPath = Get("AKTO_MODULE_DISCOVERY_CONFIG_PATH"),
            HeaderValueFilter = Get("AKTO_HEADER_VALUE_FILTER"),
            DisableEgress = Bool(Get, "TRAFFIC_DISABLE_EGRESS"),
            IgnoreIpTraffic = Bool(Get, "AKTO_IGNORE_IP_TRAFFIC"),
            IgnoreCloudMetadataCalls = Bool(Get, "AKTO_IGNORE_CLOUD_METADATA_CALLS"),
            RedactHeaders = List(Get("REDACT_HEADERS")).Select(h => h.ToLowerInvariant()).ToArray(),
            InactivityThreshold = Seconds(Get, "TRAFFIC_INACTIVITY_THRESHOLD", d.InactivityThreshold, allowFraction: true),
            MaxActiveConnections = Int(Get, "TRAFFIC_MAX_ACTIVE_CONN", d.MaxActiveConnections, 1, 10_000_000),
            BufferThresholdBytes = Megabytes(Get, "TRAFFIC_BUFFER_THRESHOLD", d.BufferThresholdBytes),
            MemoryRestartBytes = Megabytes(Get, "AKTO_MEM_THRESH_RESTART", d.MemoryRestartBytes),
            MaxHeaderBytes = Int(Get, "HTTP_MAX_HEADER_BYTES", d.MaxHeaderBytes, 256, 16 * 1024 * 1024),
            MaxBodyBytes = Int(Get, "HTTP_MAX_BODY_BYTES", d.MaxBodyBytes, 0, 512 * 1024 * 1024),
            CaptureAll = BoolDefault(Get, "CAPTURE_ALL", true),
            CaptureSsl = BoolDefault(Get, "CAPTURE_SSL", true),
            UprobePollInterval = Minutes(Get, "UPROBE_POLL_INTERVAL", d.UprobePollInterval),
            ProbeAllPid = Bool(Get, "PROBE_ALL_PID"),
            TracePids = List(Get("TRACE_PIDS")).Select(p => int.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out var pid) && pid > 0
                ? pid : throw new SettingsException("TRACE_PIDS", $"'{p}' is not a process id")).ToArray(),
            TraceComms = Comms(Get("TRACE_COMMS")),
            RingBufferMegabytes = PowerOfTwo(Get, "RING_BUFFER_MB", d.RingBufferMegabytes),
            CaptureNice = Int(Get, "CAPTURE_NICE", d.CaptureNice, -20, 19),
            ConnectionMapEntries = Int(Get, "CONN_MAP_ENTRIES", d.ConnectionMapEntries, 64, 16_777_216),
            CaptureChunkBytes = Int(Get, "CAPTURE_CHUNK_BYTES", d.CaptureChunkBytes, 64, 16384),
            CaptureChunksPerCall = Int(Get, "CAPTURE_CHUNKS_PER_CALL", d.CaptureChunksPerCall, 1, 64),
            BpfObjectPath = Get("BPF_OBJECT_PATH") ?? d.BpfObjectPath,
            BpfFeaturesOff = List(Get("BPF_FEATURES_OFF")).Select(f => Kernel.KernelFeatures.Names.Contains(f.ToLowerInvariant()) ? f.ToLowerInvariant()
                : throw new SettingsException("BPF_FEATURES_OFF", $"'{f}' is not one of {string.Join(", ", Kernel.KernelFeatures.Names)}")).ToHashSet(),
            HostProc = Get("HOST_PROC") ?? d.HostProc,
            CaptureDumpPath = Get("CAPTURE_DUMP_PATH"),
            AccountId = Digits(Get, "AKTO_ACCOUNT_ID", d.AccountId),
            VxlanId = Digits(Get, "AKTO_VXLAN_ID", d.VxlanId),
            MongoConnection = Get("AKTO_MONGO_CONN"),
            MongoRefreshInterval = Seconds(Get, "AKTO_MONGO_REFRESH_SECS", d.MongoRefreshInterval, allowFraction: true),
            MongoTimeout = Seconds(Get, "AKTO_MONGO_TIMEOUT_SECS", d.MongoTimeout, allowFraction: true, max: 600),
            MetricsBind = Bind(Get, "METRICS_BIND", d.MetricsBind),
            LogJson = LogFormat(Get("LOG_FORMAT")),
            SensitiveDataPolicy = Get("SENSITIVE_DATA_POLICY") ?? d.SensitiveDataPolicy,
            SensitiveMaskKey = Get("SENSITIVE_DATA_MASK_KEY"),
            SensitiveMetricsMaxSeries = Int(Get, "SENSITIVE_METRICS_MAX_SERIES", d.SensitiveMetricsMaxSeries, 1, 100_000),
            NodeName = Get("NODE_NAME"),
            PodName = Get("POD_NAME"),
        };
        if (s.KafkaAuth && (s.KafkaUsername is null || s.KafkaPassword is null))
            throw new SettingsException("IS_AUTH_IMPLEMENTED", "true needs KAFKA_USERNAME and KAFKA_PASSWORD");
        if (s.KafkaUseTls && !s.KafkaInsecureSkipVerify)
            CheckCaFile(s.KafkaCaCertPath);
        if ((long)s.KafkaQueueMegabytes * 1024 * 1024 < s.KafkaMaxMessageBytes)
            throw new SettingsException("KAFKA_QUEUE_MB", $"{s.KafkaQueueMegabytes} MB cannot hold one message of KAFKA_MAX_MESSAGE_BYTES ({s.KafkaMaxMessageBytes} bytes)");
        // librdkafka checks the level only when the first batch is compressed; a wrong one would
        // surface as failed deliveries long after start
        var maxLevel = s.KafkaCompression switch { "gzip" => 9, "lz4" => 12, "zstd" => 22, _ => 0 };
        if (s.KafkaCompressionLevel > maxLevel || (s.KafkaCompression == "zstd" && s.KafkaCompressionLevel == 0))
            throw new SettingsException("KAFKA_COMPRESSION_LEVEL", s.KafkaCompression is "none" or "snappy"
                ? $"{s.KafkaCompression} has no levels: leave it unset (-1)"
                : $"{s.KafkaCompressionLevel} is not a {s.KafkaCompression} level ({(s.KafkaCompression == "zstd" ? 1 : 0)}..{maxLevel}, or -1)");
        ValidateFilters(s);
        Sensitive.SensitivePolicyFile.Load(s);
        if (s.MongoConnection is not null)
            Filtering.MongoSettingsSource.Validate(s.MongoConnection);
        return s with { Effective = Describe(env) };
    }

    public static Settings FromEnvironment()
    {
        var env = new Dictionary<string, string?>();
        foreach (System.Collections.DictionaryEntry e in Environment.GetEnvironmentVariables())
            env[(string)e.Key] = (string?)e.Value;
        return Read(env);
    }

    /// <summary>true in any case is true; anything else is false (the field's rule).</summary>
    private static bool Bool(Func<string, string?> get, string name) =>
        string.Equals(get(name), "true", StringComparison.OrdinalIgnoreCase);

    private static bool BoolDefault(Func<string, string?> get, string name, bool dflt) =>
        get(name) is { } v ? string.Equals(v, "true", StringComparison.OrdinalIgnoreCase) : dflt;

    private static int Int(Func<string, string?> get, string name, int dflt, int min, int max)
    {
        var v = get(name);
        if (v is null) return dflt;
        if (!long.TryParse(v, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var n))
            throw new SettingsException(name, $"'{v}' is not a whole number");
        if (n < min || n > max)
            throw new SettingsException(name, $"{n} is outside {min}..{max}");
        return (int)n;
    }

    private static TimeSpan Seconds(Func<string, string?> get, string name, TimeSpan dflt, bool allowFraction, double max = 86400 * 365)
    {
        var v = get(name);
        if (v is null) return dflt;
        if (!double.TryParse(v, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var secs) || double.IsNaN(secs))
            throw new SettingsException(name, $"'{v}' is not a number of seconds");
        if (!allowFraction && secs != Math.Floor(secs))
            throw new SettingsException(name, $"'{v}' must be a whole number of seconds");
        if (secs <= 0)
            throw new SettingsException(name, $"'{v}' must be more than 0 seconds");
        if (secs > max)
            throw new SettingsException(name, $"'{v}' is more than the longest allowed, {max} seconds");
        return TimeSpan.FromSeconds(secs);
    }

    private static TimeSpan Minutes(Func<string, string?> get, string name, TimeSpan dflt)
    {
        var v = get(name);
        if (v is null) return dflt;
        if (!double.TryParse(v, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var m) || m <= 0 || m > 525600)
            throw new SettingsException(name, $"'{v}' is not a positive number of minutes");
        return TimeSpan.FromMinutes(m);
    }

    private static long Megabytes(Func<string, string?> get, string name, long dflt)
    {
        var v = get(name);
        if (v is null) return dflt;
        if (!long.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out var mb) || mb <= 0 || mb > 1_000_000)
            throw new SettingsException(name, $"'{v}' is not a positive number of MB");
        return mb * 1024 * 1024;
    }

    private static int PowerOfTwo(Func<string, string?> get, string name, int dflt)
    {
        var n = Int(get, name, dflt, 1, 1024);
        if ((n & (n - 1)) != 0)
            throw new SettingsException(name, $"{n} is not a power of two");
        return n;
    }

    /// <summary>The processor parses these as 32-bit integers: anything else loses the record there.</summary>
    private static string Digits(Func<string, string?> get, string name, string dflt)
    {
        var v = get(name);
        if (v is null) return dflt;
        if (!v.All(char.IsAsciiDigit) || !int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out _))
            throw new SettingsException(name, $"'{v}' must be digits of a number below 2^31 (the processor parses it as an integer)");
        return v;
    }

    /// <summary>Kafka's rule for topic names: 1..249 of [a-zA-Z0-9._-], not "." or "..".</summary>
    private static string Topic(Func<string, string?> get, string name, string dflt)
    {
        var v = get(name);
        if (v is null) return dflt;
        if (v.Length > 249 || v is "." or ".." || !v.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-'))
            throw new SettingsException(name, $"'{v}' is not a valid Kafka topic name (1-249 of letters, digits, '.', '_', '-')");
        return v;
    }

    private static void CheckCaFile(string path)
    {
        if (!File.Exists(path))
            throw new SettingsException("TLS_CA_CERT_PATH", $"'{path}' does not exist (USE_TLS=true verifies the broker with it; INSECURE_SKIP_VERIFY=true does not)");
        try
        {
            var certs = new System.Security.Cryptography.X509Certificates.X509Certificate2Collection();
            certs.ImportFromPemFile(path);
            if (certs.Count == 0) throw new System.Security.Cryptography.CryptographicException("no certificate in it");
        }
        catch (Exception e) when (e is System.Security.Cryptography.CryptographicException or IOException or UnauthorizedAccessException)
        {
            throw new SettingsException("TLS_CA_CERT_PATH", $"'{path}' is not a PEM certificate file: {e.Message}");
        }
    }

    /// <summary>The filters' documents are checked here too, so that every configuration error
    /// stops start-up the same way.</summary>
    private static void ValidateFilters(Settings s)
    {
        try
        {
            Filtering.DiscoveryRules.Parse(s.DiscoveryConfig);
        }
        catch (Filtering.DiscoveryRulesException e)
        {
            throw new SettingsException("AKTO_MODULE_DISCOVERY_CONFIG", e.Message);
        }
        if (s.DiscoveryConfigPath is not null && File.Exists(s.DiscoveryConfigPath))
        {
            try
            {
                Filtering.DiscoveryRules.Parse(File.ReadAllText(s.DiscoveryConfigPath));
            }
            catch (Filtering.DiscoveryRulesException e)
            {
                throw new SettingsException("AKTO_MODULE_DISCOVERY_CONFIG_PATH", $"{s.DiscoveryConfigPath}: {e.Message}");
            }
            catch (IOException e)
            {
                throw new SettingsException("AKTO_MODULE_DISCOVERY_CONFIG_PATH", $"{s.DiscoveryConfigPath}: {e.Message}");
            }
        }
        Filtering.HeaderValueFilter.Parse(s.HeaderValueFilter);
    }

    private static string Bind(Func<string, string?> get, string name, string dflt)
    {
        var v = get(name) ?? dflt;
        var colon = v.LastIndexOf(':');
        if (colon <= 0 || !ushort.TryParse(v.AsSpan(colon + 1), out _) ||
            !System.Net.IPAddress.TryParse(v[..colon].Trim('[', ']'), out _))
            throw new SettingsException(name, $"'{v}' is not address:port");
        return v;
    }

    private static bool LogFormat(string? v) => v?.ToLowerInvariant() switch
    {
        null or "text" => false,
        "json" => true,
        _ => throw new SettingsException("LOG_FORMAT", $"'{v}' is neither text nor json"),
    };

    private static void ValidateBrokers(string name, string value)
    {
        foreach (var b in value.Split(',', StringSplitOptions.TrimEntries))
        {
            var colon = b.LastIndexOf(':');
            if (colon <= 0 || !ushort.TryParse(b.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port == 0)
                throw new SettingsException(name, $"'{b}' is not host:port");
            var host = b[..colon];
            var valid = host.StartsWith('[') && host.EndsWith(']')
                ? System.Net.IPAddress.TryParse(host[1..^1], out var a6) && a6.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6
                : host.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_');
            if (!valid)
                throw new SettingsException(name, $"'{b}' is not host:port (a host name, an IPv4 address or [IPv6], no scheme)");
        }
    }

    private static string[] Comms(string? v)
    {
        var comms = List(v);
        if (comms.Length > 8)
            throw new SettingsException("TRACE_COMMS", $"{comms.Length} names given, at most 8 are supported");
        foreach (var c in comms)
            if (System.Text.Encoding.UTF8.GetByteCount(c) > 15)
                throw new SettingsException("TRACE_COMMS", $"'{c}' is longer than a process name can be (15 bytes)");
        return comms;
    }

    private static string[] List(string? v) =>
        v is null ? [] : v.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
}
