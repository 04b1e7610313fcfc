using System.Security.Cryptography;
using Collector.Sensitive;

namespace Collector.Tests.Sensitive;

/// <summary>The masks' keyed hash: HMAC-SHA256 from OpenSSL states prepared once per key, which
/// must give .NET's HMAC for every length and key, and fall back to it when libcrypto is not there.</summary>
public class KeyedHashTests
{
    // around the SHA-256 block (55/56 is where the length stops fitting the last block), around
    // the 1 KiB pieces the native calls are fed in, and a PEM-sized value
    private static readonly int[] Lengths = [0, 1, 15, 16, 55, 56, 63, 64, 65, 127, 128, 1023, 1024, 1025, 2048, 5000];

    public static TheoryData<int> KeyLengths => new() { 16, 25, 63, 64, 65, 200 };

    [Theory]
    [MemberData(nameof(KeyLengths))]
    public void Gives_dotnets_HMAC_SHA256_for_every_length(int keyLength)
    {
        var key = new byte[keyLength];
        new Random(keyLength).NextBytes(key);
        var hash = new KeyedHash(key);
        // libcrypto.so.3 is on every machine .NET's cryptography runs on: the native path is the one tested
        Assert.True(hash.Native);
        var random = new Random(7);
        Span<byte> mac = stackalloc byte[32];
        foreach (var length in Lengths)
            for (var round = 0; round < 3; round++)
            {
                var value = new byte[length];
                random.NextBytes(value);
                hash.Compute(value, mac);
                Assert.True(mac.SequenceEqual(HMACSHA256.HashData(key, value)), $"key {keyLength} B, value {length} B");
            }
    }

    [Fact]
    public void Equal_values_give_equal_hashes_whatever_came_between()
    {
        var hash = new KeyedHash("a-secret-of-some-length"u8.ToArray());
        Span<byte> first = stackalloc byte[32], again = stackalloc byte[32], other = stackalloc byte[32];
        hash.Compute("4111111111111111"u8, first);
        hash.Compute("5500005555555559"u8, other);
        hash.Compute("4111111111111111"u8, again);
        Assert.True(first.SequenceEqual(again));
        Assert.False(first.SequenceEqual(other));
    }

    [Fact]
    public void Without_libcrypto_dotnets_HMAC_does_it()
    {
        var key = "a-secret-of-some-length"u8.ToArray();
        var hash = new KeyedHash(key, native: null);
        Assert.False(hash.Native);
        Span<byte> mac = stackalloc byte[32];
        foreach (var length in Lengths)
        {
            var value = new byte[length];
            new Random(length).NextBytes(value);
            hash.Compute(value, mac);
            Assert.True(mac.SequenceEqual(HMACSHA256.HashData(key, value)), $"value {length} B");
        }
    }
}
