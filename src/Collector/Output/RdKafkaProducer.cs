using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using Confluent.Kafka;

namespace Collector.Output;

/// <summary>A librdkafka producer driven through the C API of the bundled library, for the
/// traffic path.
///
/// Why not Confluent.Kafka's producer: profiled under wrk (perf, nginx + wrk, both ends traced),
/// its per-message machinery cost as much CPU as librdkafka's own work. Its Produce takes only
/// an exact-length byte[] (the encoded message was copied out of the encoder's buffer for it, then
/// copied again by librdkafka), marshals the header through a managed Headers list, and pins a
/// GCHandle per message that its delivery thread resolves into a DeliveryReport, a shim and our
/// closure: 15 % of the collector's CPU ran on its delivery thread alone. Here the message goes
/// from the encoder's buffer straight into librdkafka (its one copy, RD_KAFKA_MSG_F_COPY), the
/// header is a pointer and a length, and the per-message opaque is the message's own size, so a
/// delivery report allocates nothing: it is the error code and that number.
///
/// Delivery reports, errors and statistics come through librdkafka's event API, not its
/// callbacks: one delivery event holds the reports of a whole produce request, read here in one
/// pass and handed over as one span, counted under one lock instead of one C-to-.NET crossing and
/// one lock per message. (A quiet `make bench --sink kafka=...` run showed no difference in the
/// process's CPU per exchange beyond its noise: librdkafka's own work dominates.)
///
/// Error codes are librdkafka's, which Confluent.Kafka's <see cref="ErrorCode"/> mirrors value for
/// value; the collector names them with it (the failure counters' labels).</summary>
public sealed unsafe class RdKafkaProducer : IDisposable
{
    /// <summary>The delivery outcome of one message: its opaque (given to <see cref="Produce"/>) and
    /// the error (NoError when the broker acknowledged it).</summary>
    public readonly record struct Delivery(long Opaque, ErrorCode Error);

    /// <summary>The outcomes of a batch of messages, in the order librdkafka reports them. Runs on
    /// the poll thread; the span is valid only during the call.</summary>
    public delegate void DeliveryHandler(ReadOnlySpan<Delivery> deliveries);

    private const int EventDr = 0x1, EventError = 0x8, EventStats = 0x40;
    /// <summary>Reports read from a delivery event per native call.</summary>
    private const int DeliveryChunk = 256;

    private readonly IntPtr _rk;
    private readonly IntPtr _queue;
    private readonly IntPtr _rkt;
    private readonly byte* _headerName;
    private GCHandle _self;
    private readonly Thread _poller;
    private volatile bool _stopping;
    private int _disposed;

    private readonly DeliveryHandler _onDelivery;
    private readonly Action<ErrorCode, string, bool> _onError;
    private readonly Action<string> _onStatistics;
    private readonly Action<int, string, string> _onLog;

    /// <param name="config">librdkafka properties (names as librdkafka spells them).</param>
    /// <param name="topic">The topic of <see cref="Produce"/>; control messages name theirs.</param>
    /// <param name="headerName">The name of the one header a message may carry.</param>
    public RdKafkaProducer(IReadOnlyDictionary<string, string> config, string topic, string headerName,
        DeliveryHandler onDelivery, Action<ErrorCode, string, bool> onError, Action<string> onStatistics, Action<int, string, string> onLog)
    {
        _onDelivery = onDelivery;
        _onError = onError;
        _onStatistics = onStatistics;
        _onLog = onLog;
        var api = Api.Instance;
        var err = stackalloc byte[512];
        var conf = api.ConfNew();
        foreach (var (name, value) in config)
        {
            if (name.StartsWith("dotnet.", StringComparison.Ordinal)) continue;
            fixed (byte* n = Utf8Z(name), v = Utf8Z(value))
                if (api.ConfSet(conf, n, v, err, 512) != 0)
                {
                    var why = Marshal.PtrToStringUTF8((IntPtr)err);
                    api.ConfDestroy(conf);
                    throw new KafkaException(new Error(ErrorCode.Local_InvalidArg, $"{name}: {why}"));
                }
        }
        _self = GCHandle.Alloc(this);
        api.ConfSetOpaque(conf, GCHandle.ToIntPtr(_self));
        api.ConfSetEvents(conf, EventDr | EventError | EventStats);
        // logs stay a callback (from librdkafka's own threads): they are rare and must be seen
        // even while the poll thread is busy
        api.ConfSetLogCb(conf, &OnLogNative);
        _rk = api.New(0 /* RD_KAFKA_PRODUCER */, conf, err, 512);
        if (_rk == IntPtr.Zero)
        {
            var why = Marshal.PtrToStringUTF8((IntPtr)err);
            api.ConfDestroy(conf); // rd_kafka_new keeps the conf only when it succeeds
            _self.Free();
            throw new KafkaException(new Error(ErrorCode.Local_InvalidArg, "rd_kafka_new: " + why));
        }
        _queue = api.QueueGetMain(_rk);
        fixed (byte* t = Utf8Z(topic)) _rkt = api.TopicNew(_rk, t, IntPtr.Zero);
        var header = Utf8Z(headerName);
        _headerName = (byte*)NativeMemory.Alloc((nuint)header.Length);
        header.AsSpan().CopyTo(new Span<byte>(_headerName, header.Length));
        // librdkafka hands delivery reports, errors and statistics to whoever polls: one thread
        _poller = new Thread(PollLoop) { Name = "kafka-poll", IsBackground = true };
        _poller.Start();
    }

    /// <summary>Serves the main queue's events: delivery reports (in batches), errors, statistics.</summary>
    private void PollLoop()
    {
        var api = Api.Instance;
        var messages = new Message*[DeliveryChunk];
        var deliveries = new Delivery[DeliveryChunk];
        while (!_stopping)
        {
            var ev = api.QueuePoll(_queue, 100);
            if (ev == IntPtr.Zero) continue;
            try
            {
                switch (api.EventType(ev))
                {
                    case EventDr:
                        fixed (Message** m = messages)
                        {
                            nuint n;
                            while ((n = api.EventMessageArray(ev, m, DeliveryChunk)) > 0)
                            {
                                for (var i = 0; i < (int)n; i++)
                                    deliveries[i] = new Delivery((long)m[i]->Private, (ErrorCode)m[i]->Err);
                                try
                                {
                                    _onDelivery(deliveries.AsSpan(0, (int)n));
                                }
                                catch (Exception e)
                                {
                                    // the rest of the event's reports are still handed over
                                    Console.Error.WriteLine("kafka: delivery report handler failed: " + e);
                                }
                            }
                        }
                        break;
                    case EventError:
                        OnErrorEvent(ev);
                        break;
                    case EventStats:
                        _onStatistics(Marshal.PtrToStringUTF8(api.EventStats(ev)) ?? "");
                        break;
                }
            }
            catch (Exception e)
            {
                // the handlers own their failures; one that escapes must not stop the reports
                Console.Error.WriteLine("kafka: event handler failed: " + e);
            }
            finally
            {
                api.EventDestroy(ev);
            }
        }
    }

    private void OnErrorEvent(IntPtr ev)
    {
        var api = Api.Instance;
        var code = (ErrorCode)api.EventError(ev);
        var text = Marshal.PtrToStringUTF8(api.EventErrorString(ev)) ?? "";
        var fatal = api.EventErrorIsFatal(ev) != 0 || code == ErrorCode.Local_Fatal;
        if (fatal)
        {
            // the event may name only "fatal": the underlying error is kept by the handle
            var buf = stackalloc byte[512];
            var underlying = (ErrorCode)api.FatalError(_rk, buf, 512);
            if (underlying != ErrorCode.NoError)
            {
                code = underlying;
                text = Marshal.PtrToStringUTF8((IntPtr)buf) ?? text;
            }
        }
        _onError(code, text, fatal);
    }

    /// <summary>Hands one message of the traffic topic to librdkafka, which copies it. Throws
    /// <see cref="KafkaException"/> with librdkafka's code when it refuses (Local_QueueFull: its
    /// queue is full).</summary>
    public void Produce(ReadOnlySpan<byte> value, ReadOnlySpan<byte> header, long opaque) =>
        Produce(_rkt, IntPtr.Zero, value, header, opaque);

    /// <summary>A message to another topic (connection test, heartbeats): rare, named per call.</summary>
    public void Produce(string topic, ReadOnlySpan<byte> value, long opaque)
    {
        fixed (byte* t = Utf8Z(topic)) Produce(IntPtr.Zero, (IntPtr)t, value, default, opaque);
    }

    private void Produce(IntPtr rkt, IntPtr topic, ReadOnlySpan<byte> value, ReadOnlySpan<byte> header, long opaque)
    {
        var vus = stackalloc Vu[5];
        var n = 0;
        if (rkt != IntPtr.Zero) { vus[n].Type = VType.Rkt; vus[n].A = rkt; }
        else { vus[n].Type = VType.Topic; vus[n].A = topic; }
        n++;
        fixed (byte* v = value, h = header)
        {
            vus[n].Type = VType.Value; vus[n].A = (IntPtr)v; vus[n].B = value.Length; n++;
            if (!header.IsEmpty)
            {
                vus[n].Type = VType.Header; vus[n].A = (IntPtr)_headerName; vus[n].B = (long)h; vus[n].C = header.Length; n++;
            }
            vus[n].Type = VType.MsgFlags; vus[n].A = 2; /* RD_KAFKA_MSG_F_COPY */ n++;
            vus[n].Type = VType.Opaque; vus[n].A = (IntPtr)opaque; n++;
            var error = Api.Instance.Produceva(_rk, vus, (nuint)n);
            if (error != IntPtr.Zero)
            {
                var code = (ErrorCode)Api.Instance.ErrorCode(error);
                var reason = Marshal.PtrToStringUTF8(Api.Instance.ErrorString(error)) ?? code.ToString();
                Api.Instance.ErrorDestroy(error);
                throw new KafkaException(new Error(code, reason));
            }
        }
    }

    /// <summary>Asks a broker for the topic's metadata: the number of brokers it names, or the
    /// error. The proof that a broker answers (it also makes librdkafka reconnect).</summary>
    public (int Brokers, ErrorCode Error) Metadata(TimeSpan timeout)
    {
        MetadataHead* md = null;
        var code = (ErrorCode)Api.Instance.Metadata(_rk, 0, _rkt, &md, (int)timeout.TotalMilliseconds);
        if (code != ErrorCode.NoError) return (0, code);
        var brokers = md->BrokerCount;
        Api.Instance.MetadataDestroy(md);
        return (brokers, ErrorCode.NoError);
    }

    /// <summary>rd_kafka_flush: sends lingering batches at once and waits up to timeout for every
    /// message to be reported (the reports are served by the poll thread).</summary>
    public void Flush(TimeSpan timeout) => Api.Instance.Flush(_rk, (int)Math.Max(0, timeout.TotalMilliseconds));

    public static string Reason(ErrorCode code) => Marshal.PtrToStringUTF8(Api.Instance.Err2Str((int)code)) ?? code.ToString();

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _stopping = true;
        _poller.Join();
        Api.Instance.TopicDestroy(_rkt);
        Api.Instance.QueueDestroy(_queue);
        // rd_kafka_destroy may still serve callbacks: the handle to this object stays valid until after
        Api.Instance.Destroy(_rk);
        NativeMemory.Free(_headerName);
        _self.Free();
    }

    private static RdKafkaProducer? Self(IntPtr opaque) =>
        opaque == IntPtr.Zero ? null : GCHandle.FromIntPtr(opaque).Target as RdKafkaProducer;

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void OnLogNative(IntPtr rk, int level, byte* facility, byte* message)
    {
        try
        {
            Self(Api.Instance.Opaque(rk))?._onLog(level, Marshal.PtrToStringUTF8((IntPtr)facility) ?? "",
                Marshal.PtrToStringUTF8((IntPtr)message) ?? "");
        }
        catch (Exception e)
        {
            Console.Error.WriteLine("kafka: log handler failed: " + e);
        }
    }

    private static byte[] Utf8Z(string s) => Encoding.UTF8.GetBytes(s + "\0");

    private enum VType
    {
        End = 0, Topic = 1, Rkt = 2, Partition = 3, Value = 4, Key = 5, Opaque = 6, MsgFlags = 7, Timestamp = 8, Header = 9, Headers = 10,
    }

    /// <summary>rd_kafka_vu_t: the type, then a 64-byte union (here its first three words:
    /// pointer/int, size or value pointer, header size).</summary>
    [StructLayout(LayoutKind.Explicit, Size = 72)]
    private struct Vu
    {
        [FieldOffset(0)] public VType Type;
        [FieldOffset(8)] public IntPtr A;
        [FieldOffset(16)] public long B;
        [FieldOffset(24)] public long C;
    }

    /// <summary>The head of rd_kafka_message_t: what a delivery report needs (err, then _private).</summary>
    [StructLayout(LayoutKind.Explicit)]
    private struct Message
    {
        [FieldOffset(0)] public int Err;
        [FieldOffset(64)] public IntPtr Private;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct MetadataHead
    {
        public int BrokerCount;
    }

    /// <summary>The C functions, bound once by name in the bundled library.</summary>
    private sealed class Api
    {
        public static readonly Api Instance = new(BundledLibrdkafka.Handle);

        public readonly delegate* unmanaged<IntPtr> ConfNew;
        public readonly delegate* unmanaged<IntPtr, void> ConfDestroy;
        public readonly delegate* unmanaged<IntPtr, byte*, byte*, byte*, nuint, int> ConfSet;
        public readonly delegate* unmanaged<IntPtr, IntPtr, void> ConfSetOpaque;
        public readonly delegate* unmanaged<IntPtr, int, void> ConfSetEvents;
        public readonly delegate* unmanaged<IntPtr, delegate* unmanaged[Cdecl]<IntPtr, int, byte*, byte*, void>, void> ConfSetLogCb;
        public readonly delegate* unmanaged<int, IntPtr, byte*, nuint, IntPtr> New;
        public readonly delegate* unmanaged<IntPtr, void> Destroy;
        public readonly delegate* unmanaged<IntPtr, IntPtr> Opaque;
        public readonly delegate* unmanaged<IntPtr, byte*, IntPtr, IntPtr> TopicNew;
        public readonly delegate* unmanaged<IntPtr, void> TopicDestroy;
        public readonly delegate* unmanaged<IntPtr, Vu*, nuint, IntPtr> Produceva;
        public readonly delegate* unmanaged<IntPtr, int> ErrorCode;
        public readonly delegate* unmanaged<IntPtr, IntPtr> ErrorString;
        public readonly delegate* unmanaged<IntPtr, void> ErrorDestroy;
        public readonly delegate* unmanaged<IntPtr, IntPtr> QueueGetMain;
        public readonly delegate* unmanaged<IntPtr, void> QueueDestroy;
        public readonly delegate* unmanaged<IntPtr, int, IntPtr> QueuePoll;
        public readonly delegate* unmanaged<IntPtr, int> EventType;
        public readonly delegate* unmanaged<IntPtr, Message**, nuint, nuint> EventMessageArray;
        public readonly delegate* unmanaged<IntPtr, int> EventError;
        public readonly delegate* unmanaged<IntPtr, IntPtr> EventErrorString;
        public readonly delegate* unmanaged<IntPtr, int> EventErrorIsFatal;
        public readonly delegate* unmanaged<IntPtr, IntPtr> EventStats;
        public readonly delegate* unmanaged<IntPtr, void> EventDestroy;
        public readonly delegate* unmanaged<IntPtr, int, int> Flush;
        public readonly delegate* unmanaged<IntPtr, int, IntPtr, MetadataHead**, int, int> Metadata;
        public readonly delegate* unmanaged<MetadataHead*, void> MetadataDestroy;
        public readonly delegate* unmanaged<int, IntPtr> Err2Str;
        public readonly delegate* unmanaged<IntPtr, byte*, nuint, int> FatalError;

        private Api(IntPtr lib)
        {
            IntPtr F(string name) => NativeLibrary.GetExport(lib, name);
            ConfNew = (delegate* unmanaged<IntPtr>)F("rd_kafka_conf_new");
            ConfDestroy = (delegate* unmanaged<IntPtr, void>)F("rd_kafka_conf_destroy");
            ConfSet = (delegate* unmanaged<IntPtr, byte*, byte*, byte*, nuint, int>)F("rd_kafka_conf_set");
            ConfSetOpaque = (delegate* unmanaged<IntPtr, IntPtr, void>)F("rd_kafka_conf_set_opaque");
            ConfSetEvents = (delegate* unmanaged<IntPtr, int, void>)F("rd_kafka_conf_set_events");
            ConfSetLogCb = (delegate* unmanaged<IntPtr, delegate* unmanaged[Cdecl]<IntPtr, int, byte*, byte*, void>, void>)F("rd_kafka_conf_set_log_cb");
            New = (delegate* unmanaged<int, IntPtr, byte*, nuint, IntPtr>)F("rd_kafka_new");
            Destroy = (delegate* unmanaged<IntPtr, void>)F("rd_kafka_destroy");
            Opaque = (delegate* unmanaged<IntPtr, IntPtr>)F("rd_kafka_opaque");
            TopicNew = (delegate* unmanaged<IntPtr, byte*, IntPtr, IntPtr>)F("rd_kafka_topic_new");
            TopicDestroy = (delegate* unmanaged<IntPtr, void>)F("rd_kafka_topic_destroy");
            Produceva = (delegate* unmanaged<IntPtr, Vu*, nuint, IntPtr>)F("rd_kafka_produceva");
            ErrorCode = (delegate* unmanaged<IntPtr, int>)F("rd_kafka_error_code");
            ErrorString = (delegate* unmanaged<IntPtr, IntPtr>)F("rd_kafka_error_string");
            ErrorDestroy = (delegate* unmanaged<IntPtr, void>)F("rd_kafka_error_destroy");
            QueueGetMain = (delegate* unmanaged<IntPtr, IntPtr>)F("rd_kafka_queue_get_main");
            QueueDestroy = (delegate* unmanaged<IntPtr, void>)F("rd_kafka_queue_destroy");
            QueuePoll = (delegate* unmanaged<IntPtr, int, IntPtr>)F("rd_kafka_queue_poll");
            EventType = (delegate* unmanaged<IntPtr, int>)F("rd_kafka_event_type");
            EventMessageArray = (delegate* unmanaged<IntPtr, Message**, nuint, nuint>)F("rd_kafka_event_message_array");
            EventError = (delegate* unmanaged<IntPtr, int>)F("rd_kafka_event_error");
            EventErrorString = (delegate* unmanaged<IntPtr, IntPtr>)F("rd_kafka_event_error_string");
            EventErrorIsFatal = (delegate* unmanaged<IntPtr, int>)F("rd_kafka_event_error_is_fatal");
            EventStats = (delegate* unmanaged<IntPtr, IntPtr>)F("rd_kafka_event_stats");
            EventDestroy = (delegate* unmanaged<IntPtr, void>)F("rd_kafka_event_destroy");
            Flush = (delegate* unmanaged<IntPtr, int, int>)F("rd_kafka_flush");
            Metadata = (delegate* unmanaged<IntPtr, int, IntPtr, MetadataHead**, int, int>)F("rd_kafka_metadata");
            MetadataDestroy = (delegate* unmanaged<MetadataHead*, void>)F("rd_kafka_metadata_destroy");
            Err2Str = (delegate* unmanaged<int, IntPtr>)F("rd_kafka_err2str");
            FatalError = (delegate* unmanaged<IntPtr, byte*, nuint, int>)F("rd_kafka_fatal_error");
        }
    }
}
