namespace Collector.Kernel;

/// <summary>Which of the eBPF object's two program sets runs (bpf/common.h).</summary>
public enum ProgramSet
{
    /// <summary>Task storage and bpf_loop (5.17 and later).</summary>
    Current,
    /// <summary>Per-thread state in hash maps, bounded loops (5.8 to 5.16); programs named *_compat.</summary>
    Compat,
}

/// <summary>Below the supported floor: one line naming the kernel, what it lacks and the floor.</summary>
public sealed class KernelBelowFloorException(string message) : Exception(message);

/// <summary>What the running kernel offers the eBPF programs, probed before the object is loaded the
/// way libbpf and cilium/ebpf do it (a tiny program or map per feature), never guessed from the
/// version string: distributions backport features, and RT or vendor builds leave some out.</summary>
public sealed record KernelFeatures
{
    /// <summary>The names BPF_FEATURES_OFF takes.</summary>
    public static readonly IReadOnlyList<string> Names = ["btf", "ring_buffer", "task_storage", "bpf_loop", "ringbuf_dynptr", "direct_copy"];

    /// <summary>The oldest kernel the programs load on: the BPF ring buffer arrived in 5.8.</summary>
    public const string Floor = "Linux 5.8 with BTF (CONFIG_DEBUG_INFO_BTF=y)";

    public required string Release { get; init; }
    /// <summary>/sys/kernel/btf/vmlinux: CO-RE relocates the programs against it.</summary>
    public bool Btf { get; init; }
    public bool Tracepoints { get; init; }
    /// <summary>BPF_MAP_TYPE_RINGBUF (5.8): the only way events leave the kernel.</summary>
    public bool RingBuffer { get; init; }
    /// <summary>BPF_MAP_TYPE_TASK_STORAGE and bpf_get_current_task_btf (5.11).</summary>
    public bool TaskStorage { get; init; }
    /// <summary>The bpf_loop helper (5.17).</summary>
    public bool BpfLoop { get; init; }
    /// <summary>bpf_ringbuf_reserve_dynptr (5.19): events reserved at their size and filled in place.</summary>
    public bool RingbufDynptr { get; init; }
    /// <summary>The bpf_probe_read_user_dynptr kfunc (6.16): user memory copied into the ring in one go.</summary>
    public bool DirectCopy { get; init; }
    /// <summary>The uprobe PMU (TLS plaintext); without it libbpf falls back to tracefs' uprobe_events.</summary>
    public bool UprobePmu { get; init; }
    public IReadOnlySet<string> TurnedOff { get; init; } = new HashSet<string>();

    public static KernelFeatures Probe(IReadOnlySet<string> turnedOff)
    {
        // libbpf 1.1's probes answer "absent" when the bpf() call itself is refused: a map type every
        // kernel with eBPF has tells a missing privilege from a missing feature
        if (Interop.Libbpf.ProbeMapType(Interop.Libbpf.MapTypeArray, IntPtr.Zero) != 1)
            throw new InvalidOperationException(
                "the bpf() system call is refused (no BPF map can be made): the collector needs CAP_BPF, CAP_PERFMON and " +
                "CAP_SYS_ADMIN (or root), and no seccomp profile that blocks bpf()");
        bool On(string name, Func<bool> probe) => !turnedOff.Contains(name) && probe();
        using var btf = BtfHandle.LoadVmlinux();
        var btfPresent = !turnedOff.Contains("btf") && btf is not null;
        return new KernelFeatures
        {
            Release = KernelRelease(),
            Btf = btfPresent,
            Tracepoints = Interop.Libbpf.ProbeProgramType(Interop.Libbpf.ProgTypeTracepoint, IntPtr.Zero) == 1,
            RingBuffer = On("ring_buffer", () => Interop.Libbpf.ProbeMapType(Interop.Libbpf.MapTypeRingbuf, IntPtr.Zero) == 1),
            TaskStorage = On("task_storage", () =>
                Interop.Libbpf.ProbeMapType(Interop.Libbpf.MapTypeTaskStorage, IntPtr.Zero) == 1 &&
                Helper(Interop.Libbpf.FuncGetCurrentTaskBtf)),
            BpfLoop = On("bpf_loop", () => Helper(Interop.Libbpf.FuncLoop)),
            RingbufDynptr = On("ringbuf_dynptr", () => Helper(Interop.Libbpf.FuncRingbufReserveDynptr)),
            // the kfunc copies into a ring-buffer dynptr: without those it is of no use
            DirectCopy = On("direct_copy", () => btf is not null && !turnedOff.Contains("ringbuf_dynptr") &&
                Interop.Libbpf.BtfFindByNameKind(btf, "bpf_probe_read_user_dynptr", Interop.Libbpf.BtfKindFunc) > 0),
            UprobePmu = File.Exists("/sys/bus/event_source/devices/uprobe/type"),
            TurnedOff = turnedOff,
        };
    }

    private static bool Helper(int id) => Interop.Libbpf.ProbeHelper(Interop.Libbpf.ProgTypeTracepoint, id, IntPtr.Zero) == 1;

    internal static string KernelRelease()
    {
        try { return File.ReadAllText("/proc/sys/kernel/osrelease").Trim(); }
        catch (IOException) { return Environment.OSVersion.VersionString; }
    }

    /// <summary>The program set these features carry: bpf_loop (5.17) comes after task storage (5.11).</summary>
    public ProgramSet Programs => TaskStorage && BpfLoop ? ProgramSet.Current : ProgramSet.Compat;

    /// <summary>How data reaches the ring buffer with these features.</summary>
    public string CopyPath => Programs == ProgramSet.Compat ? "per-CPU scratch event, copied into the ring"
        : DirectCopy ? "reserved in the ring, one copy (bpf_probe_read_user_dynptr)"
        : RingbufDynptr ? "reserved in the ring, copied in power-of-two pieces (ring-buffer dynptr)"
        : "per-CPU scratch event, copied into the ring";

    /// <summary>Throws when the kernel cannot run the programs at all.</summary>
    public void RequireFloor()
    {
        string? missing = !Btf ? "BTF at /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF)"
            : !Tracepoints ? "BPF tracepoint programs"
            : !RingBuffer ? "the BPF ring buffer (BPF_MAP_TYPE_RINGBUF, Linux 5.8)"
            : null;
        if (missing is null) return;
        var off = TurnedOff.Count > 0 ? $" (BPF_FEATURES_OFF={string.Join(",", TurnedOff)})" : "";
        throw new KernelBelowFloorException(
            $"kernel {Release} is below the supported floor: it lacks {missing}{off}; the collector needs {Floor} or later");
    }

    /// <summary>One line for the log: the variant chosen and why.</summary>
    public string Describe()
    {
        string Has(bool b) => b ? "yes" : "no";
        var why = Programs == ProgramSet.Current
            ? "task storage and bpf_loop present"
            : $"task storage {Has(TaskStorage)}, bpf_loop {Has(BpfLoop)}: per-thread state in hash maps, bounded loops " +
              "(at most 16 events per call, 8 iovecs, 2 mmsg messages; the rest is a counted gap)";
        var off = TurnedOff.Count > 0 ? $"; turned off by BPF_FEATURES_OFF: {string.Join(",", TurnedOff)}" : "";
        return $"eBPF programs: {Programs.ToString().ToLowerInvariant()} set ({why}); data copy: {CopyPath}; " +
               $"uprobe PMU {Has(UprobePmu)}{off}";
    }
}
