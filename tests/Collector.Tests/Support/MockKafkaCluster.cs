using System.Runtime.InteropServices;
using System.Text;

namespace Collector.Tests.Support;

/// <summary>librdkafka's mock cluster, owned by the test: real Kafka protocol over TCP on
/// loopback, with brokers that can be taken down and up and errors that can be injected. It runs
/// on threads of this test process; the collector (another process) connects to it like to any
/// broker. Topics are created on first produce.</summary>
public sealed class MockKafkaCluster : IDisposable
{
    private const string Lib = "librdkafka.so.1";
    private IntPtr _rk;
    private IntPtr _mc;

    public string Bootstraps { get; }

    public MockKafkaCluster(int brokers = 1)
    {
        var err = new StringBuilder(512);
        var conf = rd_kafka_conf_new();
        // the mock's own client handle never talks to anyone; keep it quiet
        if (rd_kafka_conf_set(conf, "log_level", "0", err, (UIntPtr)err.Capacity) != 0)
            throw new InvalidOperationException("rd_kafka_conf_set: " + err);
        _rk = rd_kafka_new(0, conf, err, (UIntPtr)err.Capacity);
        if (_rk == IntPtr.Zero) throw new InvalidOperationException("rd_kafka_new: " + err);
        _mc = rd_kafka_mock_cluster_new(_rk, brokers);
        if (_mc == IntPtr.Zero) throw new InvalidOperationException("rd_kafka_mock_cluster_new failed");
        Bootstraps = Marshal.PtrToStringUTF8(rd_kafka_mock_cluster_bootstraps(_mc))!;
    }

    public void SetDown(int brokerId = 1) => Check(rd_kafka_mock_broker_set_down(_mc, brokerId), "set_down");
    public void SetUp(int brokerId = 1) => Check(rd_kafka_mock_broker_set_up(_mc, brokerId), "set_up");

    /// <summary>The next count requests of this API (0 = Produce) fail with these Kafka error codes.</summary>
    public void PushRequestErrors(short apiKey, params int[] errors) =>
        rd_kafka_mock_push_request_errors_array(_mc, apiKey, (UIntPtr)errors.Length, errors);

    public void CreateTopic(string topic, int partitions) =>
        Check(rd_kafka_mock_topic_create(_mc, topic, partitions, 1), "topic_create");

    private static void Check(int err, string what)
    {
        if (err != 0) throw new InvalidOperationException($"rd_kafka_mock_broker_{what}: error {err}");
    }

    public void Dispose()
    {
        if (_mc != IntPtr.Zero) rd_kafka_mock_cluster_destroy(_mc);
        if (_rk != IntPtr.Zero) rd_kafka_destroy(_rk);
        _mc = _rk = IntPtr.Zero;
    }

    [DllImport(Lib)] private static extern IntPtr rd_kafka_conf_new();
    [DllImport(Lib)] private static extern int rd_kafka_conf_set(IntPtr conf, string name, string value, StringBuilder errstr, UIntPtr size);
    [DllImport(Lib)] private static extern IntPtr rd_kafka_new(int type, IntPtr conf, StringBuilder errstr, UIntPtr size);
    [DllImport(Lib)] private static extern void rd_kafka_destroy(IntPtr rk);
    [DllImport(Lib)] private static extern IntPtr rd_kafka_mock_cluster_new(IntPtr rk, int brokers);
    [DllImport(Lib)] private static extern IntPtr rd_kafka_mock_cluster_bootstraps(IntPtr mc);
    [DllImport(Lib)] private static extern void rd_kafka_mock_cluster_destroy(IntPtr mc);
    [DllImport(Lib)] private static extern int rd_kafka_mock_broker_set_down(IntPtr mc, int brokerId);
    [DllImport(Lib)] private static extern int rd_kafka_mock_broker_set_up(IntPtr mc, int brokerId);
    [DllImport(Lib)] private static extern void rd_kafka_mock_push_request_errors_array(IntPtr mc, short apiKey, UIntPtr cnt, int[] errors);
    [DllImport(Lib)] private static extern int rd_kafka_mock_topic_create(IntPtr mc, string topic, int partitions, int replicationFactor);
}
