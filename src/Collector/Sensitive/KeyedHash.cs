using System.Runtime.CompilerServices;
using System.Security.Cryptography;

namespace Collector.Sensitive;

/// <summary>HMAC-SHA256 of the values a policy masks, under one key. HMAC is
/// SHA256((K ^ opad) ‖ SHA256((K ^ ipad) ‖ value)): the two padded key blocks are hashed once
/// here, and each value costs a copy of those two states and two short hashes (about 120 ns
/// with OpenSSL's SHA extensions, against about 530 ns through IncrementalHash, whose reset sets
/// the key up again for every value). Without libcrypto's exports, or when its answer differs
/// from .NET's on a known vector at start, IncrementalHash does it all. One per classifier
/// (one per event thread): its states are not shared.</summary>
internal sealed unsafe class KeyedHash
{
    private const int Block = 64, Piece = 1024;

    private readonly Libcrypto? _native;
    private readonly IncrementalHash? _managed;
    // inner state, outer state, working state; pinned for the native calls
    private readonly byte[] _states = GC.AllocateArray<byte>(3 * Libcrypto.StateBytes, pinned: true);

    public KeyedHash(byte[] key) : this(key, Libcrypto.Instance) { }

    internal KeyedHash(byte[] key, Libcrypto? native)
    {
        if (native is not null && Prepare(native, key) && SameAsDotnet(native, key))
            _native = native;
        else
            _managed = IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, key);
    }

    /// <summary>Whether the native states are in use (tests).</summary>
    internal bool Native => _native is not null;

    /// <summary>HMAC-SHA256(key, value) into mac (32 bytes).</summary>
    public void Compute(ReadOnlySpan<byte> value, Span<byte> mac)
    {
        if (_native is null)
        {
            _managed!.AppendData(value);
            _managed.GetHashAndReset(mac);
            return;
        }
        Hmac(_native, value, mac);
    }

    private void Hmac(Libcrypto native, ReadOnlySpan<byte> value, Span<byte> mac)
    {
        var inner = State(0);
        var work = State(2);
        byte* innerHash = stackalloc byte[32];
        Unsafe.CopyBlock(work, inner, Libcrypto.StateBytes);
        fixed (byte* v = value)
            for (var done = 0; done < value.Length; done += Piece)
                native.Sha256Update(work, v + done, (nuint)Math.Min(Piece, value.Length - done));
        native.Sha256Final(innerHash, work);
        Unsafe.CopyBlock(work, State(1), Libcrypto.StateBytes);
        native.Sha256Update(work, innerHash, 32);
        fixed (byte* m = mac) native.Sha256Final(m, work);
    }

    private byte* State(int index) => (byte*)Unsafe.AsPointer(ref _states[index * Libcrypto.StateBytes]);

    private bool Prepare(Libcrypto native, byte[] key)
    {
        // a key longer than a block is hashed first (RFC 2104)
        var k = key.Length > Block ? SHA256.HashData(key) : key;
        byte* pad = stackalloc byte[Block];
        for (var round = 0; round < 2; round++)
        {
            var x = round == 0 ? (byte)0x36 : (byte)0x5c;
            for (var i = 0; i < Block; i++) pad[i] = (byte)((i < k.Length ? k[i] : 0) ^ x);
            var state = State(round);
            if (native.Sha256Init(state) != 1 || native.Sha256Update(state, pad, Block) != 1) return false;
        }
        return true;
    }

    /// <summary>The states are OpenSSL's own layout, copied as bytes: checked once against .NET's
    /// HMAC, on a value longer than a piece, so that a libcrypto which differs is not used.</summary>
    private bool SameAsDotnet(Libcrypto native, byte[] key)
    {
        var probe = new byte[Piece + 77];
        for (var i = 0; i < probe.Length; i++) probe[i] = (byte)(i * 31 + 7);
        Span<byte> mine = stackalloc byte[32];
        Hmac(native, probe, mine);
        return mine.SequenceEqual(HMACSHA256.HashData(key, probe));
    }
}
