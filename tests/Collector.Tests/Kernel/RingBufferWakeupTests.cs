using Collector.Kernel;

namespace Collector.Tests.Kernel;

/// <summary>The reader is woken per batch that still fits a core's cache, and never so late that a
/// burst has less than 15/16 of the ring left.</summary>
public sealed class RingBufferWakeupTests
{
    [Theory]
    [InlineData(1, 64 * 1024)]
    [InlineData(2, 128 * 1024)]
    [InlineData(16, 128 * 1024)]
    [InlineData(1024, 128 * 1024)]
    public void Wakeup_threshold_is_a_cache_sized_batch_and_a_sixteenth_of_the_ring_at_most(int ringMegabytes, int expected)
    {
        var ring = ringMegabytes * 1024L * 1024;
        var wakeup = KernelCapture.WakeupBytes(ring);
        Assert.Equal((ulong)expected, wakeup);
        Assert.True(wakeup <= (ulong)(ring / 16));
    }
}
