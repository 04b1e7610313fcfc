using System.Runtime.InteropServices;
using System.Text;
using Collector.Configuration;
using Collector.Events;
using Microsoft.Extensions.Logging;

namespace Collector.Kernel;

/// <summary>The loaded eBPF object: settings written into .rodata, maps sized, programs loaded,
/// syscall tracepoints attached. Uprobes are attached per library file by <see cref="TlsProbes"/>.</summary>
public sealed unsafe class KernelCapture : IDisposable
{
    private readonly BpfObjectHandle _object;
    private readonly List<BpfLinkHandle> _tracepointLinks = new();
    private readonly ILogger _log;
    private readonly int _dropMapFd;
    private readonly int _goFdChecksMapFd;
    private readonly int _connsMapFd;
    private readonly int _ncpu;

    /// <param name="attach">false: load only, and attach with <see cref="AttachTracepoints"/> once
    /// the ring buffer's reader runs (the collector's start-up).</param>
    public KernelCapture(Settings settings, ILogger log, bool attach = true)
    {
        _log = log;
        LibbpfLog.Install(log);
        Tracefs.EnsureMounted(log);
        if (!File.Exists(settings.BpfObjectPath))
            throw new FileNotFoundException($"eBPF object not found at {settings.BpfObjectPath} (BPF_OBJECT_PATH)");
        Features = KernelFeatures.Probe(settings.BpfFeaturesOff);
        Features.RequireFloor();
        _log.LogInformation("{Variant}", Features.Describe());
        _object = BpfObjectHandle.Open(settings.BpfObjectPath);
        try
        {
            ChooseProgramSet(Features.Programs);
            WriteConfig(settings);
            SetMaxEntries("events", (uint)settings.RingBufferMegabytes * 1024 * 1024);
            SetMaxEntries("conns", (uint)settings.ConnectionMapEntries);
            // a Go server's idle keep-alive connections each hold a goroutine inside Read: as many
            // calls in progress as connections, besides the threads' own
            SetMaxEntries("tls_calls", (uint)Math.Max(16384, settings.ConnectionMapEntries));
            var err = Interop.Libbpf.ObjectLoad(_object);
            if (err != 0) throw new BpfException("loading the eBPF programs (see the libbpf log above)", -err);
            _dropMapFd = MapFd("drop_counters");
            _goFdChecksMapFd = MapFd("go_fd_checks");
            _connsMapFd = MapFd("conns");
            _ncpu = Interop.Libbpf.NumPossibleCpus();
            TracePidsMapFd = MapFd("trace_pids");
            foreach (var pid in settings.TracePids)
            {
                uint key = (uint)pid;
                byte one = 1;
                if (Interop.Libbpf.MapUpdateElem(TracePidsMapFd, &key, &one, 0) != 0)
                    throw new BpfException("adding to trace_pids", Marshal.GetLastPInvokeError());
            }
            if (attach) AttachTracepoints();
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public KernelFeatures Features { get; }
    public int TracePidsMapFd { get; }
    public int EventsMapFd => MapFd("events");
    public int TracepointCount => _tracepointLinks.Count;

    private const string CompatSuffix = "_compat";

    /// <summary>Only the chosen set's programs are loaded, and only its own maps made: the other's
    /// may not exist in this kernel (task storage before 5.11), and an unloaded program never
    /// references them.</summary>
    private void ChooseProgramSet(ProgramSet set)
    {
        var compat = set == ProgramSet.Compat;
        for (var prog = Interop.Libbpf.ObjectNextProgram(_object, IntPtr.Zero); prog != IntPtr.Zero;
             prog = Interop.Libbpf.ObjectNextProgram(_object, prog))
        {
            var name = Marshal.PtrToStringUTF8(Interop.Libbpf.ProgramName(prog)) ?? "";
            Interop.Libbpf.ProgramSetAutoload(prog, name.EndsWith(CompatSuffix) == compat);
        }
        foreach (var name in CurrentOnlyMaps)
            Interop.Libbpf.MapSetAutocreate(FindMap(name), !compat);
        for (var map = Interop.Libbpf.ObjectNextMap(_object, IntPtr.Zero); map != IntPtr.Zero;
             map = Interop.Libbpf.ObjectNextMap(_object, map))
        {
            var name = Marshal.PtrToStringUTF8(Interop.Libbpf.MapName(map)) ?? "";
            if (name.EndsWith(CompatSuffix)) Interop.Libbpf.MapSetAutocreate(map, compat);
        }
    }

    /// <summary>Task-storage maps of the current set (the compat set keeps its own *_compat maps).</summary>
    private static readonly string[] CurrentOnlyMaps = ["threads", "untraced_threads"];

    private void WriteConfig(Settings s)
    {
        var rodata = FindMap(".rodata");
        var ptr = Interop.Libbpf.MapInitialValue(rodata, out var size);
        if (ptr == IntPtr.Zero || (int)size != sizeof(CollectorConfig))
            throw new InvalidOperationException(
                $"the eBPF object's .rodata is {size} bytes, the collector expects {sizeof(CollectorConfig)}: rebuild bpf/ and src/ together");
        var cfg = (CollectorConfig*)ptr;
        cfg->CollectorTgid = HostTgid(s.HostProc);
        cfg->HostMntNs = HostNamespace(s.HostProc, "mnt");
        cfg->HostPidNs = HostNamespace(s.HostProc, "pid");
        if ((cfg->HostMntNs == 0 || cfg->HostPidNs == 0) && !s.ProbeAllPid && s.TracePids.Count == 0 && s.TraceComms.Count == 0)
            throw new InvalidOperationException($"cannot read the host's mount namespace from {s.HostProc}/1/ns/mnt: needed to tell containers apart (or set PROBE_ALL_PID=true)");
        cfg->RingbufDynptr = (byte)(Features.RingbufDynptr ? 1 : 0);
        cfg->DirectCopyOff = (byte)(Features.DirectCopy ? 0 : 1);
        cfg->CapturePlain = (byte)(s.CaptureAll ? 1 : 0);
        cfg->CaptureTls = (byte)(s.CaptureSsl ? 1 : 0);
        cfg->ProbeAllPid = (byte)(s.ProbeAllPid ? 1 : 0);
        cfg->FilterPids = (byte)(s.TracePids.Count > 0 ? 1 : 0);
        cfg->ChunkSize = (uint)s.CaptureChunkBytes;
        cfg->MaxChunksPerCall = (uint)s.CaptureChunksPerCall;
        cfg->WakeupBytes = WakeupBytes(s.RingBufferMegabytes * 1024L * 1024);
        cfg->TraceCommCount = (uint)s.TraceComms.Count;
        for (var i = 0; i < s.TraceComms.Count; i++)
        {
            var bytes = Encoding.UTF8.GetBytes(s.TraceComms[i]);
            var dest = new Span<byte>(cfg->TraceComms + i * EventLayout.CommLength, EventLayout.CommLength);
            dest.Clear();
            bytes.CopyTo(dest);
        }
    }

    /// <summary>How much data the kernel lets wait before it wakes the reader: a batch small enough
    /// to be read while it is still in the cache it was written through (L2 is 0.5–2 MiB per core
    /// on current server CPUs), and a small part of the ring, so a burst has room while the reader
    /// works. Measured with nginx + wrk on this machine's two cores: waking per 128 KiB instead of
    /// per 1 MiB took the traced server from about 60k to 68k requests/s (bench/capture-bench.sh);
    /// the ring's size still sets how long a stalled reader can fall behind without loss.</summary>
    internal static ulong WakeupBytes(long ringBytes) => (ulong)Math.Min(128 * 1024, ringBytes / 16);

    /// <summary>A host namespace's inode ("mnt", "pid"): processes outside both are in a container.
    /// It is pid 1's (the collector itself runs in a container of its own under Kubernetes); where
    /// pid 1's namespaces cannot be read (a sandbox that hides them), the collector's own, which is
    /// the host's for a host install. stat() of the nsfs file gives the inode (st_ino).</summary>
    private uint HostNamespace(string hostProc, string kind)
    {
        var buf = stackalloc byte[256];
        foreach (var path in new[] { Path.Combine(hostProc, "1/ns", kind), $"/proc/self/ns/{kind}" })
        {
            if (Interop.Libc.Stat(path, buf) != 0) continue;
            var ino = (uint)*(ulong*)(buf + 8);
            _log.LogInformation("host {Kind} namespace {Inode} (from {Path})", kind, ino, path);
            return ino;
        }
        return 0;
    }

    /// <summary>Our pid as the kernel's tracepoints see it (the host's), which differs from
    /// Environment.ProcessId when the collector runs in a pid namespace of its own: the host's
    /// /proc/self names it.</summary>
    private static uint HostTgid(string hostProc)
    {
        try
        {
            if (new DirectoryInfo(Path.Combine(hostProc, "self")).LinkTarget is { } target && uint.TryParse(target, out var pid))
                return pid;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return (uint)Environment.ProcessId;
    }

    private IntPtr FindMap(string name)
    {
        var map = Interop.Libbpf.ObjectFindMapByName(_object, name);
        if (map == IntPtr.Zero) throw new InvalidOperationException($"map {name} missing from the eBPF object");
        return map;
    }

    private int MapFd(string name) => Interop.Libbpf.MapFd(FindMap(name));

    private void SetMaxEntries(string map, uint entries)
    {
        if (Interop.Libbpf.MapSetMaxEntries(FindMap(map), entries) != 0)
            throw new BpfException($"sizing map {map}", Marshal.GetLastPInvokeError());
    }

    /// <summary>The sched tracepoints first: the compat set forgets a thread's state at its exit
    /// and exec, so those must be watched before any syscall program can make a state (a thread
    /// that exited in between would leave one behind for the next thread given its id).</summary>
    public void AttachTracepoints()
    {
        if (_tracepointLinks.Count > 0) return;
        var programs = new List<(IntPtr Prog, string Section)>();
        for (var prog = Interop.Libbpf.ObjectNextProgram(_object, IntPtr.Zero); prog != IntPtr.Zero;
             prog = Interop.Libbpf.ObjectNextProgram(_object, prog))
        {
            var section = Marshal.PtrToStringUTF8(Interop.Libbpf.ProgramSectionName(prog)) ?? "";
            if (section.StartsWith("tracepoint/") && Interop.Libbpf.ProgramAutoload(prog)) programs.Add((prog, section));
        }
        foreach (var (prog, section) in programs.OrderBy(p => p.Section.StartsWith("tracepoint/sched/") ? 0 : 1))
            _tracepointLinks.Add(BpfLinkHandle.FromPointer(Interop.Libbpf.ProgramAttach(prog), $"attaching {section}"));
        _log.LogInformation("attached {Count} syscall and sched tracepoints", _tracepointLinks.Count);
    }

    internal IntPtr Program(string name)
    {
        if (Features.Programs == ProgramSet.Compat) name += CompatSuffix;
        var prog = Interop.Libbpf.ObjectFindProgramByName(_object, name);
        if (prog == IntPtr.Zero) throw new InvalidOperationException($"program {name} missing from the eBPF object");
        return prog;
    }

    /// <summary>Attaches one program as a uprobe (or uretprobe) at a file offset in an ELF file, for
    /// every process that maps the file (pid -1), with the point's cookie. The offset comes from the
    /// providers (our own symbol scan): libbpf would otherwise search the file again for each probe.</summary>
    internal BpfLinkHandle AttachUprobe(ProbePoint point, string path)
    {
        var opts = new Interop.Libbpf.UprobeOpts
        {
            Size = (nuint)sizeof(Interop.Libbpf.UprobeOpts),
            Retprobe = (byte)(point.Kind == ProbeKind.Return ? 1 : 0),
            BpfCookie = point.Cookie,
        };
        var link = Interop.Libbpf.ProgramAttachUprobeOpts(Program(point.Program), -1, path, (nuint)point.FileOffset, &opts);
        return BpfLinkHandle.FromPointer(link, $"attaching {point.Program} to {point.Site} (+0x{point.FileOffset:x}) in {path}");
    }

    /// <summary>Deletes the kernel's entry for a connection whose process ended (the kernel closed
    /// its fds without close(), which is all the programs see).</summary>
    public void ForgetConnection(uint tgid, uint fd)
    {
        var key = stackalloc uint[2] { tgid, fd };
        Interop.Libbpf.MapDeleteElem(_connsMapFd, key); // ENOENT is fine: already evicted or closed
    }

    /// <summary>Sums the per-CPU drop counters of the kernel side.</summary>
    public long[] ReadDropCounters() => ReadPerCpuCounters(_dropMapFd, (int)KernelDropReason.Count);

    /// <summary>How the sockets Go TLS calls named compared with their syscalls' (bpf/go_tls.h),
    /// indexed like <see cref="GoFdCheckLabels"/>.</summary>
    public long[] ReadGoFdChecks() => ReadPerCpuCounters(_goFdChecksMapFd, GoFdCheckLabels.Length);

    /// <summary>The labels of bpf/go_tls.h's enum go_fd_check, in its order.</summary>
    public static readonly string[] GoFdCheckLabels = ["match", "mismatch", "learned"];

    private long[] ReadPerCpuCounters(int mapFd, int count)
    {
        var totals = new long[count];
        var values = new ulong[Math.Max(_ncpu, 1)];
        fixed (ulong* v = values)
        {
            for (uint index = 0; index < totals.Length; index++)
            {
                var key = index;
                if (Interop.Libbpf.MapLookupElem(mapFd, &key, v) != 0) continue;
                long sum = 0;
                foreach (var x in values) sum += (long)x;
                totals[index] = sum;
            }
        }
        return totals;
    }

    /// <summary>Hands over the tracepoint links for detaching (see <see cref="ProbeDetach"/>).</summary>
    internal List<BpfLinkHandle> TakeTracepointLinks()
    {
        var links = new List<BpfLinkHandle>(_tracepointLinks);
        _tracepointLinks.Clear();
        return links;
    }

    public void Dispose()
    {
        ProbeDetach.DisposeConcurrently(TakeTracepointLinks());
        _object.Dispose();
    }
}

/// <summary>tracefs must be mounted for libbpf to read tracepoint ids; it is not at boot here.</summary>
internal static class Tracefs
{
    public static void EnsureMounted(ILogger log)
    {
        if (File.Exists("/sys/kernel/tracing/events/syscalls/sys_enter_read/id") ||
            File.Exists("/sys/kernel/debug/tracing/events/syscalls/sys_enter_read/id"))
            return;
        var rc = Interop.Libc.Mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, IntPtr.Zero);
        if (rc != 0)
            throw new BpfException("tracefs is not mounted at /sys/kernel/tracing and mounting it failed", Marshal.GetLastPInvokeError());
        log.LogInformation("mounted tracefs at /sys/kernel/tracing");
    }
}

/// <summary>Routes libbpf's own messages (verifier logs on failure) into our log.</summary>
internal static unsafe class LibbpfLog
{
    private static ILogger? _log;

    public static void Install(ILogger log)
    {
        _log = log;
        Interop.Libbpf.SetPrint(&Print);
    }

    /// <summary>Called by libbpf on its own thread of control: nothing may unwind into native code
    /// (the process would be torn down), so a failure to log is written to stderr as it is.</summary>
    [UnmanagedCallersOnly]
    private static int Print(int level, IntPtr format, IntPtr args)
    {
        try
        {
            if (level == Interop.Libbpf.PrintDebug || _log is null) return 0;
            var text = Format(format, args);
            if (text.Length == 0) return 0;
            if (level == Interop.Libbpf.PrintWarn) _log.LogWarning("libbpf: {Message}", text);
            else _log.LogDebug("libbpf: {Message}", text);
        }
        catch (Exception e)
        {
            try { Console.Error.WriteLine($"libbpf message could not be logged: {e.GetType().Name}: {e.Message}"); }
            catch (IOException) { } // stderr itself is gone: nowhere left to say it
        }
        return 0;
    }

    /// <summary>Most of libbpf's messages are a line. A refused program's is the verifier's whole log
    /// (up to 16 MiB) in one message, whose end says why: such a message is formatted in full and
    /// its head and tail are kept.</summary>
    private static string Format(IntPtr format, IntPtr args)
    {
        const int size = 8192, keepHead = 2048, keepTail = 16384;
        // x86-64: va_list is a pointer to one 24-byte __va_list_tag, and va_copy copies that struct;
        // vsnprintf consumes the one it is given, so a copy is kept for a second, larger pass
        var saved = stackalloc byte[24];
        Buffer.MemoryCopy((void*)args, saved, 24, 24);
        var buf = stackalloc byte[size];
        var n = Interop.Libc.Vsnprintf(buf, size, format, args);
        if (n <= 0) return "";
        if (n < size) return Encoding.UTF8.GetString(buf, n).TrimEnd();
        var big = (byte*)NativeMemory.Alloc((nuint)n + 1);
        try
        {
            var m = Interop.Libc.Vsnprintf(big, (nuint)n + 1, format, (IntPtr)saved);
            if (m <= 0) return Encoding.UTF8.GetString(buf, size - 1).TrimEnd();
            m = Math.Min(m, n);
            if (m <= keepHead + keepTail) return Encoding.UTF8.GetString(big, m).TrimEnd();
            return Encoding.UTF8.GetString(big, keepHead) + $"\n... ({m - keepHead - keepTail} bytes of the log left out) ...\n" +
                   Encoding.UTF8.GetString(big + m - keepTail, keepTail).TrimEnd();
        }
        finally
        {
            NativeMemory.Free(big);
        }
    }
}
