using Collector.Http;

namespace Collector.Tests.Http;

/// <summary>The pipe that carries a direction's bytes from one ring-buffer sample to the next.</summary>
public sealed class CarriedBytesTests
{
    [Fact]
    public void Appended_bytes_come_back_whole_across_pipe_segments_and_are_consumed_in_order()
    {
        var carry = new CarriedBytes();
        var expected = new List<byte>();
        var random = new Random(7);
        // many small appends: the pipe's 4 KiB segments are crossed several times
        for (var i = 0; i < 50; i++)
        {
            var chunk = new byte[random.Next(1, 700)];
            random.NextBytes(chunk);
            carry.Append(chunk);
            expected.AddRange(chunk);
            Assert.Equal(expected.Count, carry.Length);
        }
        Assert.Equal(expected.ToArray(), carry.Contiguous().ToArray());
        carry.Consume(1000);
        expected.RemoveRange(0, 1000);
        Assert.Equal(expected.ToArray(), carry.Contiguous().ToArray());
        // appending after a read keeps what was not consumed
        carry.Append("tail\n"u8);
        expected.AddRange("tail\n"u8.ToArray());
        Assert.Equal(expected.ToArray(), carry.Contiguous().ToArray());
        carry.Clear();
        Assert.Equal(0, carry.Length);
        Assert.Equal(0, carry.Retained);
        Assert.True(carry.Contiguous().IsEmpty);
        carry.Release();
        carry.Append("again"u8); // usable after release: a new pipe
        Assert.Equal("again"u8.ToArray(), carry.Contiguous().ToArray());
        carry.Release();
    }
}
