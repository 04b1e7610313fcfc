using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.RegularExpressions;
using Collector.Configuration;
using Collector.Tests.Support;

namespace Collector.Tests.Configuration;

/// <summary>SettingsReader.Read: the defaults of the spec, and for every family of variables a
/// value that does not parse stops start-up with one line naming the variable.</summary>
public sealed class SettingsReaderTests
{
    private static Settings Read(params (string Name, string Value)[] vars) =>
        SettingsReader.Read(vars.ToDictionary(v => v.Name, v => (string?)v.Value));

    private static SettingsException Refused(string expectedVariable, params (string Name, string Value)[] vars)
    {
        var e = Assert.Throws<SettingsException>(() => Read(vars));
        Assert.Equal(expectedVariable, e.Variable);
        Assert.StartsWith($"configuration error: {expectedVariable}: ", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.DoesNotContain('\r', e.Message);
        return e;
    }

    [Fact]
    public void Unset_variables_take_the_defaults_of_the_spec()
    {
        var s = Read();
        Assert.Null(s.KafkaBrokers);
        Assert.Equal("akto.api.logs", s.KafkaTopic);
        Assert.Equal(100, s.BatchSize);
        Assert.Equal(TimeSpan.FromSeconds(10), s.BatchTime);
        Assert.Equal(TimeSpan.FromSeconds(0.5), s.PollInterval);
        Assert.False(s.KafkaUseTls);
        Assert.Equal("./ca.crt", s.KafkaCaCertPath);
        Assert.False(s.KafkaInsecureSkipVerify);
        Assert.False(s.KafkaAuth);
        Assert.Null(s.DiscoveryConfig);
        Assert.Equal(TimeSpan.FromSeconds(30), s.InactivityThreshold);
        Assert.Equal(4096, s.MaxActiveConnections);
        Assert.Equal(600L << 20, s.BufferThresholdBytes);
        Assert.Equal(800L << 20, s.MemoryRestartBytes);
        Assert.False(s.DisableEgress);
        Assert.False(s.IgnoreIpTraffic);
        Assert.False(s.IgnoreCloudMetadataCalls);
        Assert.True(s.CaptureAll);
        Assert.True(s.CaptureSsl);
        Assert.Equal(TimeSpan.FromMinutes(5), s.UprobePollInterval);
        Assert.False(s.ProbeAllPid);
        Assert.Empty(s.TracePids);
        Assert.Empty(s.TraceComms);
        Assert.Equal("1000000", s.AccountId);
        Assert.Equal("0", s.VxlanId);
        Assert.Null(s.MongoConnection);
        Assert.Equal("akto.daemonset.producer.heartbeats", s.HeartbeatTopic);
        Assert.Equal(TimeSpan.FromSeconds(60), s.HeartbeatInterval);
        Assert.Equal(TimeSpan.FromSeconds(25), s.ShutdownGrace);
    }

    [Fact]
    public void Values_that_parse_are_taken()
    {
        var s = Read(("AKTO_KAFKA_BROKER_URL", "kafka-0.kafka:9092,10.0.0.7:9093,[2001:db8::1]:9094"),
            ("AKTO_KAFKA_TOPIC_NAME", "my.topic_1-a"), ("AKTO_TRAFFIC_BATCH_SIZE", "250"), ("AKTO_TRAFFIC_BATCH_TIME_SECS", "3"),
            ("KAFKA_POLL_INTERVAL", "0.25"), ("TRAFFIC_BUFFER_THRESHOLD", "64"), ("AKTO_MEM_THRESH_RESTART", "2048"),
            ("UPROBE_POLL_INTERVAL", "0.5"), ("TRACE_PIDS", "1, 42"), ("TRACE_COMMS", "curl,nginx"), ("AKTO_VXLAN_ID", "123"),
            ("AKTO_ACCOUNT_ID", "1000001"), ("METRICS_BIND", "[::1]:9300"), ("LOG_FORMAT", "JSON"), ("KAFKA_QUEUE_MB", "16"));
        Assert.Equal("kafka-0.kafka:9092,10.0.0.7:9093,[2001:db8::1]:9094", s.KafkaBrokers);
        Assert.Equal("my.topic_1-a", s.KafkaTopic);
        Assert.Equal(250, s.BatchSize);
        Assert.Equal(TimeSpan.FromSeconds(3), s.BatchTime);
        Assert.Equal(TimeSpan.FromMilliseconds(250), s.PollInterval);
        Assert.Equal(64L << 20, s.BufferThresholdBytes);
        Assert.Equal(2048L << 20, s.MemoryRestartBytes);
        Assert.Equal(TimeSpan.FromSeconds(30), s.UprobePollInterval);
        Assert.Equal([1, 42], s.TracePids);
        Assert.Equal(["curl", "nginx"], s.TraceComms);
        Assert.Equal("123", s.VxlanId);
        Assert.Equal("1000001", s.AccountId);
        Assert.Equal("[::1]:9300", s.MetricsBind);
        Assert.True(s.LogJson);
        Assert.Equal(16, s.KafkaQueueMegabytes);
    }

    [Fact]
    public void Kafka_compression_codec_and_level_are_checked_at_start()
    {
        Assert.Equal(("lz4", -1), (Read().KafkaCompression, Read().KafkaCompressionLevel));
        var zstd = Read(("KAFKA_COMPRESSION", "ZSTD"), ("KAFKA_COMPRESSION_LEVEL", "3"));
        Assert.Equal(("zstd", 3), (zstd.KafkaCompression, zstd.KafkaCompressionLevel));
        Assert.Equal("none", Read(("KAFKA_COMPRESSION", "none")).KafkaCompression);
        Assert.Equal(12, Read(("KAFKA_COMPRESSION_LEVEL", "12")).KafkaCompressionLevel);
        Assert.Contains("brotli", Refused("KAFKA_COMPRESSION", ("KAFKA_COMPRESSION", "brotli")).Message);
        // a level the codec does not have would fail only at the first batch: refused at start
        Refused("KAFKA_COMPRESSION_LEVEL", ("KAFKA_COMPRESSION_LEVEL", "13"));
        Refused("KAFKA_COMPRESSION_LEVEL", ("KAFKA_COMPRESSION", "gzip"), ("KAFKA_COMPRESSION_LEVEL", "10"));
        Refused("KAFKA_COMPRESSION_LEVEL", ("KAFKA_COMPRESSION", "zstd"), ("KAFKA_COMPRESSION_LEVEL", "0"));
        Assert.Contains("no levels", Refused("KAFKA_COMPRESSION_LEVEL", ("KAFKA_COMPRESSION", "snappy"), ("KAFKA_COMPRESSION_LEVEL", "1")).Message);
        Refused("KAFKA_COMPRESSION_LEVEL", ("KAFKA_COMPRESSION_LEVEL", "-2"));
    }

    [Theory]
    [InlineData("true", true)]
    [InlineData("TRUE", true)]
    [InlineData("True", true)]
    [InlineData(" true ", true)]
    [InlineData("false", false)]
    [InlineData("yes", false)]
    [InlineData("1", false)]
    [InlineData("on", false)]
    public void Booleans_are_true_in_any_case_and_anything_else_is_false(string value, bool expected)
    {
        // lenient by the spec: never an error
        var s = Read(("TRAFFIC_DISABLE_EGRESS", value), ("AKTO_IGNORE_IP_TRAFFIC", value), ("AKTO_IGNORE_CLOUD_METADATA_CALLS", value),
            ("PROBE_ALL_PID", value), ("CAPTURE_ALL", value), ("CAPTURE_SSL", value), ("INSECURE_SKIP_VERIFY", value));
        Assert.Equal(expected, s.DisableEgress);
        Assert.Equal(expected, s.IgnoreIpTraffic);
        Assert.Equal(expected, s.IgnoreCloudMetadataCalls);
        Assert.Equal(expected, s.ProbeAllPid);
        Assert.Equal(expected, s.CaptureAll); // default true, but a value that is not "true" is false
        Assert.Equal(expected, s.CaptureSsl);
        Assert.Equal(expected, s.KafkaInsecureSkipVerify);
    }

    public static IEnumerable<object[]> Numbers() =>
    [
        ["AKTO_TRAFFIC_BATCH_SIZE", "abc"], ["AKTO_TRAFFIC_BATCH_SIZE", "0"], ["AKTO_TRAFFIC_BATCH_SIZE", "-5"], ["AKTO_TRAFFIC_BATCH_SIZE", "1.5"],
        ["AKTO_TRAFFIC_BATCH_SIZE", "2000000"], ["TRAFFIC_MAX_ACTIVE_CONN", "many"], ["KAFKA_QUEUE_MESSAGES", "0"],
        ["KAFKA_MAX_MESSAGE_BYTES", "5"], ["HTTP_MAX_HEADER_BYTES", "64k"], ["HTTP_MAX_BODY_BYTES", "-1"], ["CONN_MAP_ENTRIES", "1e6"],
        ["RING_BUFFER_MB", "3"], ["CAPTURE_CHUNK_BYTES", "99999"], ["CAPTURE_CHUNKS_PER_CALL", "0"], ["TRACE_PIDS", "12,abc"], ["TRACE_PIDS", "0"],
        ["CAPTURE_NICE", "-21"], ["CAPTURE_NICE", "20"], ["CAPTURE_NICE", "high"],
    ];

    [Theory]
    [MemberData(nameof(Numbers))]
    public void Numbers_that_do_not_parse_or_are_out_of_range_are_refused(string name, string value) => Refused(name, (name, value));

    public static IEnumerable<object[]> Durations() =>
    [
        ["AKTO_TRAFFIC_BATCH_TIME_SECS", "1.5"], ["AKTO_TRAFFIC_BATCH_TIME_SECS", "0"], ["AKTO_TRAFFIC_BATCH_TIME_SECS", "-1"],
        ["AKTO_TRAFFIC_BATCH_TIME_SECS", "10s"], ["AKTO_TRAFFIC_BATCH_TIME_SECS", "901"], ["KAFKA_POLL_INTERVAL", "soon"],
        ["KAFKA_POLL_INTERVAL", "0"], ["TRAFFIC_INACTIVITY_THRESHOLD", "30s"], ["SHUTDOWN_GRACE_SECS", "-1"],
        ["AKTO_HEARTBEAT_INTERVAL_SECS", "1m"], ["UPROBE_POLL_INTERVAL", "0"], ["UPROBE_POLL_INTERVAL", "5 minutes"],
    ];

    [Theory]
    [MemberData(nameof(Durations))]
    public void Durations_that_do_not_parse_or_are_out_of_range_are_refused(string name, string value) => Refused(name, (name, value));

    public static IEnumerable<object[]> Sizes() =>
    [
        ["TRAFFIC_BUFFER_THRESHOLD", "600MB"], ["TRAFFIC_BUFFER_THRESHOLD", "0"], ["TRAFFIC_BUFFER_THRESHOLD", "1.5"],
        ["AKTO_MEM_THRESH_RESTART", "lots"], ["AKTO_MEM_THRESH_RESTART", "-800"], ["KAFKA_QUEUE_MB", "0"], ["KAFKA_QUEUE_MB", "1GB"],
    ];

    [Theory]
    [MemberData(nameof(Sizes))]
    public void Sizes_that_do_not_parse_are_refused(string name, string value) => Refused(name, (name, value));

    [Fact]
    public void A_queue_that_cannot_hold_one_message_is_refused() =>
        Refused("KAFKA_QUEUE_MB", ("KAFKA_QUEUE_MB", "1"), ("KAFKA_MAX_MESSAGE_BYTES", "2000000"));

    [Theory]
    [InlineData("kafka")]
    [InlineData("kafka:")]
    [InlineData(":9092")]
    [InlineData("kafka:0")]
    [InlineData("kafka:70000")]
    [InlineData("kafka:port")]
    [InlineData("a:1,,b:2")]
    [InlineData("kafka://broker:9092")]
    [InlineData("my broker:9092")]
    [InlineData("[not-ipv6]:9092")]
    public void Broker_lists_that_are_not_host_port_are_refused(string value)
    {
        Refused("AKTO_KAFKA_BROKER_URL", ("AKTO_KAFKA_BROKER_URL", value));
        Refused("AKTO_KAFKA_BROKER_MAL", ("AKTO_KAFKA_BROKER_MAL", value), ("AKTO_KAFKA_BROKER_URL", "ok:9092"));
    }

    [Fact]
    public void The_mal_broker_list_wins_over_the_url()
    {
        Assert.Equal("mal:9092", Read(("AKTO_KAFKA_BROKER_MAL", "mal:9092"), ("AKTO_KAFKA_BROKER_URL", "url:9092")).KafkaBrokers);
        Assert.Equal("url:9092", Read(("AKTO_KAFKA_BROKER_MAL", " "), ("AKTO_KAFKA_BROKER_URL", "url:9092")).KafkaBrokers);
    }

    [Theory]
    [InlineData("AKTO_KAFKA_TOPIC_NAME", "bad topic")]
    [InlineData("AKTO_KAFKA_TOPIC_NAME", "a/b")]
    [InlineData("AKTO_KAFKA_TOPIC_NAME", "..")]
    [InlineData("AKTO_HEARTBEAT_TOPIC", "heart:beats")]
    public void Topic_names_kafka_would_refuse_are_refused(string name, string value) => Refused(name, (name, value));

    [Fact]
    public void A_topic_name_longer_than_kafka_allows_is_refused() =>
        Refused("AKTO_KAFKA_TOPIC_NAME", ("AKTO_KAFKA_TOPIC_NAME", new string('t', 250)));

    [Theory]
    [InlineData("[{", "not valid JSON")]
    [InlineData("{\"key\":{\"eq\":\"host\"}}", "must be a JSON array")]
    [InlineData("[{\"value\":{\"regex\":\"x\"}}]", "rule 0")]
    [InlineData("[{\"key\":{\"eq\":\"x-a\"},\"value\":{\"regex\":\"a\"}},{\"key\":{\"eq\":\"x-b\"},\"value\":{\"regex\":\"([a-z\"}}]", "rule 1 (x-b): invalid regex")]
    [InlineData("[{\"key\":{\"eq\":\"x-a\"},\"value\":{}}]", "rule 0 (x-a)")]
    public void Discovery_rules_with_bad_json_or_regex_are_refused_naming_the_rule(string json, string expected)
    {
        var e = Refused("AKTO_MODULE_DISCOVERY_CONFIG", ("AKTO_MODULE_DISCOVERY_CONFIG", json));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void A_discovery_rules_file_with_a_bad_regex_is_refused_naming_the_file_and_the_rule()
    {
        var file = Path.Combine(Repo.TempDir("rules"), "rules.json");
        File.WriteAllText(file, "[{\"key\":{\"eq\":\"host\"},\"value\":{\"regex\":\"*api\"}}]");
        var e = Refused("AKTO_MODULE_DISCOVERY_CONFIG_PATH", ("AKTO_MODULE_DISCOVERY_CONFIG_PATH", file));
        Assert.Contains(file, e.Message);
        Assert.Contains("rule 0 (host): invalid regex", e.Message);
    }

    [Theory]
    [InlineData("[1]")]
    [InlineData("{\"x-env\":1}")]
    [InlineData("null")]
    [InlineData("x-env=prod")]
    public void A_header_value_filter_that_is_not_an_object_of_strings_is_refused(string json) =>
        Refused("AKTO_HEADER_VALUE_FILTER", ("AKTO_HEADER_VALUE_FILTER", json));

    [Fact]
    public void Trace_comms_beyond_what_the_kernel_side_matches_are_refused()
    {
        Refused("TRACE_COMMS", ("TRACE_COMMS", "a,b,c,d,e,f,g,h,i"));
        Refused("TRACE_COMMS", ("TRACE_COMMS", "a-process-name-of-16"));
        Assert.Equal(8, Read(("TRACE_COMMS", "a,b,c,d,e,f,g,h")).TraceComms.Count);
    }

    [Theory]
    [InlineData("9176")]
    [InlineData("localhost:9176")]
    [InlineData("0.0.0.0:http")]
    [InlineData("1.2.3.4:70000")]
    public void A_metrics_bind_that_is_not_address_port_is_refused(string value) => Refused("METRICS_BIND", ("METRICS_BIND", value));

    [Theory]
    [InlineData("xml")]
    [InlineData("logfmt")]
    public void A_log_format_other_than_text_or_json_is_refused(string value) => Refused("LOG_FORMAT", ("LOG_FORMAT", value));

    [Theory]
    [InlineData("AKTO_VXLAN_ID", "abc")]
    [InlineData("AKTO_VXLAN_ID", "-1")]
    [InlineData("AKTO_VXLAN_ID", "99999999999")]
    [InlineData("AKTO_ACCOUNT_ID", "acct-1")]
    [InlineData("AKTO_ACCOUNT_ID", "1e6")]
    public void Ids_the_processor_parses_as_integers_must_be_digits(string name, string value) => Refused(name, (name, value));

    [Fact]
    public void Sasl_without_credentials_is_refused()
    {
        Refused("IS_AUTH_IMPLEMENTED", ("IS_AUTH_IMPLEMENTED", "true"));
        Refused("IS_AUTH_IMPLEMENTED", ("IS_AUTH_IMPLEMENTED", "true"), ("KAFKA_USERNAME", "u"));
        Refused("IS_AUTH_IMPLEMENTED", ("IS_AUTH_IMPLEMENTED", "true"), ("KAFKA_PASSWORD", "p"));
        var s = Read(("IS_AUTH_IMPLEMENTED", "TRUE"), ("KAFKA_USERNAME", "u"), ("KAFKA_PASSWORD", "p"));
        Assert.True(s.KafkaAuth);
        // credentials without IS_AUTH_IMPLEMENTED=true are not used
        Assert.False(Read(("KAFKA_USERNAME", "u"), ("KAFKA_PASSWORD", "p")).KafkaAuth);
    }

    [Fact]
    public void Mongo_settings_are_read_and_a_connection_string_the_driver_refuses_stops_start_up()
    {
        var s = Read(("AKTO_MONGO_CONN", "mongodb://mongo.akto.svc:27017/admini"), ("AKTO_MONGO_REFRESH_SECS", "0.5"));
        Assert.Equal("mongodb://mongo.akto.svc:27017/admini", s.MongoConnection);
        Assert.Equal(TimeSpan.FromSeconds(0.5), s.MongoRefreshInterval);
        var e = Refused("AKTO_MONGO_CONN", ("AKTO_MONGO_CONN", "mongo.akto.svc:27017"));
        Assert.Contains("not a MongoDB connection string", e.Message);
        Refused("AKTO_MONGO_REFRESH_SECS", ("AKTO_MONGO_REFRESH_SECS", "0"));
        Refused("AKTO_MONGO_TIMEOUT_SECS", ("AKTO_MONGO_TIMEOUT_SECS", "a while"));
    }

    [Fact]
    public void Tls_needs_a_readable_pem_ca_unless_verification_is_skipped()
    {
        var dir = Repo.TempDir("tls-settings");
        var missing = Path.Combine(dir, "missing.crt");
        Refused("TLS_CA_CERT_PATH", ("USE_TLS", "true"), ("TLS_CA_CERT_PATH", missing));
        var notPem = Path.Combine(dir, "not.pem");
        File.WriteAllText(notPem, "hello");
        Refused("TLS_CA_CERT_PATH", ("USE_TLS", "true"), ("TLS_CA_CERT_PATH", notPem));

        var ca = Path.Combine(dir, "ca.crt");
        using (var key = RSA.Create(2048))
        {
            var req = new CertificateRequest("CN=test-ca", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
            req.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
            using var cert = req.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
            File.WriteAllText(ca, cert.ExportCertificatePem());
        }
        var s = Read(("USE_TLS", "true"), ("TLS_CA_CERT_PATH", ca));
        Assert.True(s.KafkaUseTls);
        Assert.Equal(ca, s.KafkaCaCertPath);
        // skipping verification needs no CA
        Assert.True(Read(("USE_TLS", "true"), ("TLS_CA_CERT_PATH", missing), ("INSECURE_SKIP_VERIFY", "true")).KafkaInsecureSkipVerify);
    }

    [Fact]
    public void A_value_with_a_line_break_is_still_reported_on_one_line()
    {
        var e = Refused("AKTO_TRAFFIC_BATCH_SIZE", ("AKTO_TRAFFIC_BATCH_SIZE", "1\n2"));
        Assert.Contains("1\\n2", e.Message);
    }

    [Fact]
    public void Every_variable_the_reader_reads_is_listed_for_help()
    {
        // the names in the reader's source, compared with the list --help prints
        var source = File.ReadAllText(Path.Combine(Repo.Root, "src", "Collector", "Configuration", "Settings.cs"));
        var read = source[source.IndexOf("public static Settings Read(", StringComparison.Ordinal)..];
        var names = Regex.Matches(read, "\"([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\"").Select(m => m.Groups[1].Value).ToHashSet();
        Assert.True(names.Count > 40, $"only {names.Count} names found");
        var listed = SettingsReader.Variables.Select(v => v.Name).ToHashSet();
        Assert.Empty(names.Except(listed));
        // and every variable of the spec's table is among them
        string[] spec =
        [
            "AKTO_KAFKA_BROKER_MAL", "AKTO_KAFKA_BROKER_URL", "AKTO_KAFKA_TOPIC_NAME", "AKTO_TRAFFIC_BATCH_SIZE", "AKTO_TRAFFIC_BATCH_TIME_SECS",
            "KAFKA_POLL_INTERVAL", "USE_TLS", "TLS_CA_CERT_PATH", "INSECURE_SKIP_VERIFY", "IS_AUTH_IMPLEMENTED", "KAFKA_USERNAME", "KAFKA_PASSWORD",
            "AKTO_MODULE_DISCOVERY_CONFIG", "TRAFFIC_INACTIVITY_THRESHOLD", "TRAFFIC_MAX_ACTIVE_CONN", "TRAFFIC_BUFFER_THRESHOLD",
            "AKTO_MEM_THRESH_RESTART", "TRAFFIC_DISABLE_EGRESS", "AKTO_IGNORE_IP_TRAFFIC", "AKTO_IGNORE_CLOUD_METADATA_CALLS", "CAPTURE_ALL",
            "CAPTURE_SSL", "UPROBE_POLL_INTERVAL", "PROBE_ALL_PID", "TRACE_PIDS", "TRACE_COMMS", "AKTO_ACCOUNT_ID", "AKTO_MONGO_CONN",
        ];
        Assert.Empty(spec.Except(names));
    }
}
