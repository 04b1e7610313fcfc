using System.Runtime.InteropServices;

namespace Collector.Events;

// Mirrors bpf/collector.h byte for byte; EventLayoutTests compares offsets with the C compiler's.

public enum EventType : uint { Open = 1, Data = 2, Close = 3, Exec = 4, Exit = 5, Bind = 6 }

public enum EventSource : byte { Syscall = 0, OpenSsl = 1, GnuTls = 2, GoTls = 3 }

/// <summary>Direction of bytes as seen by the traced process.</summary>
public enum StreamDirection : byte { Egress = 0, Ingress = 1 }

public enum ConnectionOrigin : ushort { Unknown = 0, Accept = 1, Connect = 2 }

public enum KernelDropReason
{
    RingBufferFull = 0,
    RingBufferFullBytes,
    BeyondCaptureBytes,
    IovSkipped,
    ConnectionMapFull,
    NotHttpBytes,
    ReadFailedBytes,
    SendfileBytes,
    ActiveCallsFull,
    TlsCallsOverlapped,
    GoConnNotTcpBytes,
    GoBeforeAttachBytes,
    Count,
}

public static class EventLayout
{
    public const int MaxDataSize = 16384;
    public const int MaxComms = 8;
    public const int CommLength = 16;
    /// <summary>header.fd of TLS plaintext whose socket is not known yet (UNBOUND_FD).</summary>
    public const uint UnboundFd = 0xffffffff;
    public const uint CloseTls = 1;
    public const uint CloseTlsPlaintext = 2;
}

[StructLayout(LayoutKind.Sequential)]
public struct EventHeader
{
    public ulong TimestampNs;
    public EventType Type;
    public uint Tgid;
    public uint Fd;
    public uint Generation;
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct OpenEvent
{
    public EventHeader Header;
    public ushort Family;
    public ushort LocalPort;
    public ushort RemotePort;
    public ConnectionOrigin Origin;
    public fixed byte LocalAddr[16];
    public fixed byte RemoteAddr[16];
    public fixed byte Comm[EventLayout.CommLength];
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct DataEventHeader
{
    public EventHeader Header;
    public ulong Position;
    public uint CallBytes;
    public uint DataLength;
    public StreamDirection Direction;
    public EventSource Source;
    public fixed byte Pad[6];
    public ulong TlsCtx;
    // payload of DataLength bytes follows (struct data_event.data)
}

[StructLayout(LayoutKind.Sequential)]
public struct CloseEvent
{
    public EventHeader Header;
    public ulong EgressBytes;
    public ulong IngressBytes;
    public uint Flags;
    public uint Pad;
}

[StructLayout(LayoutKind.Sequential)]
public struct BindEvent
{
    public EventHeader Header;
    public ulong TlsCtx;
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct CollectorConfig
{
    public uint CollectorTgid;
    public uint HostMntNs;
    public uint HostPidNs;
    public byte RingbufDynptr;
    public byte DirectCopyOff;
    public ushort Pad0;
    public byte CapturePlain;
    public byte CaptureTls;
    public byte ProbeAllPid;
    public byte FilterPids;
    public uint TraceCommCount;
    public uint ChunkSize;
    public uint MaxChunksPerCall;
    public ulong WakeupBytes;
    public fixed byte TraceComms[EventLayout.MaxComms * EventLayout.CommLength];
}
