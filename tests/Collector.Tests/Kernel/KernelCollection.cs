namespace Collector.Tests.Kernel;

/// <summary>Tests that load probes into the real kernel run one at a time: each starts its own
/// collector, and two collectors tracing the same process names would see each other's traffic.
/// They never skip: if the kernel refuses the programs, they fail.</summary>
[CollectionDefinition("kernel", DisableParallelization = true)]
public sealed class KernelCollection;
