using System.Runtime.InteropServices;
using System.Text;
using Collector.Output;

namespace Collector.Tests.Support;

/// <summary>librdkafka's mock cluster, owned by the test: real Kafka protocol over TCP on
/// loopback, with brokers that can be taken down and up and errors that can be injected. It runs
/// on threads of this test process; the collector (another process) connects to it like to any
/// broker. Topics are created on first produce.
///
/// The C API is taken from the very file the collector loads (<see cref="BundledLibrdkafka"/>, the
/// librdkafka.redist build in this test's output), so the broker side and the producer under test
/// are the same librdkafka version. kcat, on Debian's own librdkafka, stays the independent
/// consumer.</summary>
public sealed unsafe class MockKafkaCluster : IDisposable
{
    private IntPtr _rk;
    private IntPtr _mc;

    public string Bootstraps { get; }

    /// <summary>The librdkafka version of the mock cluster (the bundled library's).</summary>
    public static string LibraryVersion => Marshal.PtrToStringUTF8(Api.Instance.VersionStr())!;

    public MockKafkaCluster(int brokers = 1)
    {
        var api = Api.Instance;
        var conf = api.ConfNew();
        // the mock's own client handle never talks to anyone; keep it quiet
        var err = stackalloc byte[512];
        if (api.ConfSet(conf, "log_level", "0", err) != 0)
            throw new InvalidOperationException("rd_kafka_conf_set: " + Marshal.PtrToStringUTF8((IntPtr)err));
        _rk = api.New(conf, err);
        if (_rk == IntPtr.Zero) throw new InvalidOperationException("rd_kafka_new: " + Marshal.PtrToStringUTF8((IntPtr)err));
        _mc = api.ClusterNew(_rk, brokers);
        if (_mc == IntPtr.Zero) throw new InvalidOperationException("rd_kafka_mock_cluster_new failed");
        Bootstraps = Marshal.PtrToStringUTF8(api.ClusterBootstraps(_mc))!;
    }

    public void SetDown(int brokerId = 1) => Check(Api.Instance.BrokerSetDown(_mc, brokerId), "set_down");
    public void SetUp(int brokerId = 1) => Check(Api.Instance.BrokerSetUp(_mc, brokerId), "set_up");

    /// <summary>The next count requests of this API (0 = Produce) fail with these Kafka error codes.</summary>
    public void PushRequestErrors(short apiKey, params int[] errors)
    {
        fixed (int* e = errors) Api.Instance.PushRequestErrorsArray(_mc, apiKey, (UIntPtr)errors.Length, e);
    }

    public void CreateTopic(string topic, int partitions) =>
        Check(Api.Instance.TopicCreate(_mc, topic, partitions, 1), "topic_create");

    private static void Check(int err, string what)
    {
        if (err != 0) throw new InvalidOperationException($"rd_kafka_mock_broker_{what}: error {err}");
    }

    public void Dispose()
    {
        if (_mc != IntPtr.Zero) Api.Instance.ClusterDestroy(_mc);
        if (_rk != IntPtr.Zero) Api.Instance.Destroy(_rk);
        _mc = _rk = IntPtr.Zero;
    }

    /// <summary>The C functions of the bundled library, bound once by name.</summary>
    private sealed class Api
    {
        public static readonly Api Instance = new(NativeLibrary.Load(BundledLibrdkafka.DefaultPath));

        private readonly delegate* unmanaged<IntPtr> _versionStr;
        private readonly delegate* unmanaged<IntPtr> _confNew;
        private readonly delegate* unmanaged<IntPtr, byte*, byte*, byte*, UIntPtr, int> _confSet;
        private readonly delegate* unmanaged<int, IntPtr, byte*, UIntPtr, IntPtr> _new;
        private readonly delegate* unmanaged<IntPtr, void> _destroy;
        private readonly delegate* unmanaged<IntPtr, int, IntPtr> _clusterNew;
        private readonly delegate* unmanaged<IntPtr, IntPtr> _clusterBootstraps;
        private readonly delegate* unmanaged<IntPtr, void> _clusterDestroy;
        private readonly delegate* unmanaged<IntPtr, int, int> _brokerSetDown;
        private readonly delegate* unmanaged<IntPtr, int, int> _brokerSetUp;
        private readonly delegate* unmanaged<IntPtr, short, UIntPtr, int*, void> _pushRequestErrorsArray;
        private readonly delegate* unmanaged<IntPtr, byte*, int, int, int> _topicCreate;

        private Api(IntPtr lib)
        {
            IntPtr F(string name) => NativeLibrary.GetExport(lib, name);
            _versionStr = (delegate* unmanaged<IntPtr>)F("rd_kafka_version_str");
            _confNew = (delegate* unmanaged<IntPtr>)F("rd_kafka_conf_new");
            _confSet = (delegate* unmanaged<IntPtr, byte*, byte*, byte*, UIntPtr, int>)F("rd_kafka_conf_set");
            _new = (delegate* unmanaged<int, IntPtr, byte*, UIntPtr, IntPtr>)F("rd_kafka_new");
            _destroy = (delegate* unmanaged<IntPtr, void>)F("rd_kafka_destroy");
            _clusterNew = (delegate* unmanaged<IntPtr, int, IntPtr>)F("rd_kafka_mock_cluster_new");
            _clusterBootstraps = (delegate* unmanaged<IntPtr, IntPtr>)F("rd_kafka_mock_cluster_bootstraps");
            _clusterDestroy = (delegate* unmanaged<IntPtr, void>)F("rd_kafka_mock_cluster_destroy");
            _brokerSetDown = (delegate* unmanaged<IntPtr, int, int>)F("rd_kafka_mock_broker_set_down");
            _brokerSetUp = (delegate* unmanaged<IntPtr, int, int>)F("rd_kafka_mock_broker_set_up");
            _pushRequestErrorsArray = (delegate* unmanaged<IntPtr, short, UIntPtr, int*, void>)F("rd_kafka_mock_push_request_errors_array");
            _topicCreate = (delegate* unmanaged<IntPtr, byte*, int, int, int>)F("rd_kafka_mock_topic_create");
        }

        private const int ErrSize = 512;

        public IntPtr VersionStr() => _versionStr();
        public IntPtr ConfNew() => _confNew();

        public int ConfSet(IntPtr conf, string name, string value, byte* err)
        {
            fixed (byte* n = Utf8Z(name), v = Utf8Z(value)) return _confSet(conf, n, v, err, ErrSize);
        }

        public IntPtr New(IntPtr conf, byte* err) => _new(0 /* RD_KAFKA_PRODUCER */, conf, err, ErrSize);
        public void Destroy(IntPtr rk) => _destroy(rk);
        public IntPtr ClusterNew(IntPtr rk, int brokers) => _clusterNew(rk, brokers);
        public IntPtr ClusterBootstraps(IntPtr mc) => _clusterBootstraps(mc);
        public void ClusterDestroy(IntPtr mc) => _clusterDestroy(mc);
        public int BrokerSetDown(IntPtr mc, int id) => _brokerSetDown(mc, id);
        public int BrokerSetUp(IntPtr mc, int id) => _brokerSetUp(mc, id);
        public void PushRequestErrorsArray(IntPtr mc, short apiKey, UIntPtr count, int* errors) => _pushRequestErrorsArray(mc, apiKey, count, errors);

        public int TopicCreate(IntPtr mc, string topic, int partitions, int replication)
        {
            fixed (byte* t = Utf8Z(topic)) return _topicCreate(mc, t, partitions, replication);
        }

        private static byte[] Utf8Z(string s) => Encoding.UTF8.GetBytes(s + "\0");
    }
}
