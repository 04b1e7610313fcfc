using System.Buffers.Binary;

namespace Collector.Http2;

/// <summary>HTTP/2 frame types, flags and the connection preface (RFC 9113 §3.4, §4, §6).</summary>
internal static class Http2Frame
{
    public const int HeaderSize = 9;
    public const int DefaultMaxFrameSize = 16384;
    /// <summary>The largest length the protocol can express (2^24-1).</summary>
    public const int MaxFrameSizeLimit = (1 << 24) - 1;

    public static ReadOnlySpan<byte> Preface => "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8;

    public const byte Data = 0, Headers = 1, Priority = 2, RstStream = 3, Settings = 4, PushPromise = 5,
        Ping = 6, GoAway = 7, WindowUpdate = 8, Continuation = 9;

    public const byte FlagEndStream = 0x1, FlagAck = 0x1, FlagEndHeaders = 0x4, FlagPadded = 0x8, FlagPriority = 0x20;

    public const ushort SettingHeaderTableSize = 1, SettingMaxFrameSize = 5;
}

/// <summary>The 9 bytes before every frame's payload.</summary>
internal readonly struct Http2FrameHeader
{
    public readonly int Length;
    public readonly byte Type;
    public readonly byte Flags;
    public readonly uint StreamId;

    public Http2FrameHeader(int length, byte type, byte flags, uint streamId)
    {
        Length = length;
        Type = type;
        Flags = flags;
        StreamId = streamId;
    }

    public static Http2FrameHeader Read(ReadOnlySpan<byte> b) =>
        new((b[0] << 16) | (b[1] << 8) | b[2], b[3], b[4], BinaryPrimitives.ReadUInt32BigEndian(b[5..9]) & 0x7fffffffu);

    public bool Has(byte flag) => (Flags & flag) != 0;

    /// <summary>Why these fields break RFC 9113 for a known type (null when they do not). Unknown
    /// types are allowed (and skipped).</summary>
    public string? Violation(int maxLength)
    {
        if (Length > maxLength) return "frame_too_large";
        switch (Type)
        {
            case Http2Frame.Data or Http2Frame.Headers or Http2Frame.Priority or Http2Frame.RstStream
                or Http2Frame.PushPromise or Http2Frame.Continuation when StreamId == 0:
                return "frame_on_stream_0";
            case Http2Frame.Settings or Http2Frame.Ping or Http2Frame.GoAway when StreamId != 0:
                return "control_frame_on_stream";
            case Http2Frame.Priority when Length != 5:
            case Http2Frame.RstStream when Length != 4:
            case Http2Frame.WindowUpdate when Length != 4:
            case Http2Frame.Ping when Length != 8:
            case Http2Frame.GoAway when Length < 8:
            case Http2Frame.Settings when Length % 6 != 0 || (Has(Http2Frame.FlagAck) && Length != 0):
                return "bad_frame_length";
        }
        return null;
    }

    /// <summary>Whether 9 bytes can begin a frame: used to find frames where the stream's history
    /// is unknown (a connection joined mid-stream, after a hole), so stricter than the protocol:
    /// known types only, no reserved bit, only the flags the type defines.</summary>
    public static bool IsPlausible(ReadOnlySpan<byte> b, int maxLength)
    {
        if (b.Length < Http2Frame.HeaderSize || (b[5] & 0x80) != 0 || b[3] > Http2Frame.Continuation) return false;
        var h = Read(b);
        if (h.Violation(maxLength) is not null) return false;
        var allowed = h.Type switch
        {
            Http2Frame.Data => Http2Frame.FlagEndStream | Http2Frame.FlagPadded,
            Http2Frame.Headers => Http2Frame.FlagEndStream | Http2Frame.FlagEndHeaders | Http2Frame.FlagPadded | Http2Frame.FlagPriority,
            Http2Frame.PushPromise => Http2Frame.FlagEndHeaders | Http2Frame.FlagPadded,
            Http2Frame.Continuation => Http2Frame.FlagEndHeaders,
            Http2Frame.Settings or Http2Frame.Ping => Http2Frame.FlagAck,
            _ => 0,
        };
        return (h.Flags & ~allowed) == 0;
    }

    /// <summary>Whether an event's bytes begin with plausible frames laid end to end (each frame
    /// inside the event is plausible; the last may run past its end).</summary>
    public static bool StartsWithFrames(ReadOnlySpan<byte> data, int maxLength)
    {
        var pos = 0;
        var frames = 0;
        while (data.Length - pos >= Http2Frame.HeaderSize)
        {
            if (!IsPlausible(data[pos..], maxLength)) return false;
            pos += Http2Frame.HeaderSize + Read(data[pos..]).Length;
            frames++;
        }
        return frames > 0;
    }
}
