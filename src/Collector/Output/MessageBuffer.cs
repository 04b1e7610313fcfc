using System.Buffers;
using System.Runtime.CompilerServices;

namespace Collector.Output;

/// <summary>The bytes of the message being written: a growable array the encoder writes into
/// directly. Why not ArrayBufferWriter behind IBufferWriter: the encoder asks for room some forty
/// times per message, and the interface dispatch plus ArrayBufferWriter's out-of-line size check
/// took about 5 % of the collector's CPU under load (perf, nginx + wrk); here the check that
/// almost always passes is inlined and nothing is virtual.</summary>
public sealed class MessageBuffer : IBufferWriter<byte>
{
    private byte[] _bytes;
    private int _count;

    public MessageBuffer(int capacity = 16384) => _bytes = new byte[Math.Max(capacity, 256)];

    public int WrittenCount => _count;
    public ReadOnlySpan<byte> WrittenSpan => _bytes.AsSpan(0, _count);
    public ReadOnlyMemory<byte> WrittenMemory => _bytes.AsMemory(0, _count);

    public void ResetWrittenCount() => _count = 0;

    /// <summary>Room for at least size bytes after what is written.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Span<byte> GetSpan(int sizeHint = 0)
    {
        if (_bytes.Length - _count < Math.Max(sizeHint, 1)) Grow(sizeHint);
        return _bytes.AsSpan(_count);
    }

    public Memory<byte> GetMemory(int sizeHint = 0)
    {
        if (_bytes.Length - _count < Math.Max(sizeHint, 1)) Grow(sizeHint);
        return _bytes.AsMemory(_count);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Advance(int count)
    {
        if ((uint)count > (uint)(_bytes.Length - _count)) ThrowPastEnd(count);
        _count += count;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Write(ReadOnlySpan<byte> bytes)
    {
        if (_bytes.Length - _count < bytes.Length) Grow(bytes.Length);
        bytes.CopyTo(_bytes.AsSpan(_count));
        _count += bytes.Length;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void Grow(int size)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        var needed = (long)_count + Math.Max(size, 1);
        if (needed > Array.MaxLength) throw new OutOfMemoryException($"a message of {needed} bytes");
        var bigger = new byte[(int)Math.Min(Math.Max(needed, (long)_bytes.Length * 2), Array.MaxLength)];
        _bytes.AsSpan(0, _count).CopyTo(bigger);
        _bytes = bigger;
    }

    private void ThrowPastEnd(int count) =>
        throw new InvalidOperationException($"advanced {count} bytes with {_bytes.Length - _count} left");
}
