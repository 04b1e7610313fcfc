using System.Globalization;
using System.Runtime.InteropServices;
using Collector.Kernel;
using Microsoft.Extensions.Logging;

namespace Collector.Lifecycle;

/// <summary>CAPTURE_NICE: the scheduling priority of the work that decides whether events are lost.
///
/// Measured under full load on 2 cores (bench-capture's startup mode, wrk and nginx traced): at the
/// default priority the ring buffer's reader spent more time waiting for a CPU than running,
/// behind the traced servers, the JIT's background thread and librdkafka's threads, and the ring
/// overflowed for seconds after start (300k-550k events lost); with the reader at nice -10 it lost
/// none. Start-up (verifying the eBPF programs, attaching, the first scans) runs at the same
/// priority until the collector is ready, so a busy node is not left unobserved for longer than
/// it must. Both cost no more CPU than the work needs: the reader's work is bounded by the
/// traffic, start-up by itself.
///
/// A nice value ranks a thread among the tasks of its CPU cgroup only: in Kubernetes that is the
/// collector's own pod (the reader ahead of its JIT and Kafka threads); against other pods the
/// pod's CPU request (cpu.weight) decides.</summary>
public static unsafe class CapturePriority
{
    /// <summary>Every thread of the process at <paramref name="nice"/> for start-up; threads started
    /// meanwhile inherit it. Returns the nice value to return to (the process's own, as started),
    /// or null when start-up was not raised (nothing to undo).</summary>
    public static int? RaiseForStartup(int nice, ILogger log)
    {
        var original = NiceOf("/proc/thread-self/stat");
        if (nice >= original) return null;
        string? error = null;
        foreach (var tid in Threads())
            if (Interop.Libc.Setpriority(Interop.Libc.PrioProcess, (uint)tid, nice) != 0) error ??= Marshal.GetLastPInvokeErrorMessage();
        if (error is not null)
            log.LogWarning("start-up: CAPTURE_NICE={Nice} not applied ({Error}; a negative value needs CAP_SYS_NICE)", nice, error);
        return original;
    }

    /// <summary>Start-up is over: every thread but the reader back to the process's own nice value.</summary>
    public static void EndStartup(int? original, int readerTid)
    {
        if (original is not { } nice) return;
        foreach (var tid in Threads())
            if (tid != readerTid) Interop.Libc.Setpriority(Interop.Libc.PrioProcess, (uint)tid, nice);
    }

    /// <summary>The calling thread (the reader) at <paramref name="nice"/> for good; threads it
    /// starts (the thread pool grows from whichever thread queues work) do not inherit it
    /// (SCHED_RESET_ON_FORK). Returns the thread's id.</summary>
    public static int RaiseReader(int nice, ILogger log)
    {
        var tid = Interop.Libc.Gettid();
        if (nice == 0) return tid;
        var param = 0;
        if (Interop.Libc.SchedSetscheduler(0, Interop.Libc.SchedOther | Interop.Libc.SchedResetOnFork, &param) == 0 &&
            Interop.Libc.Setpriority(Interop.Libc.PrioProcess, (uint)tid, nice) == 0)
            log.LogInformation("ring buffer reader: thread {Tid} runs at nice {Nice} (CAPTURE_NICE)", tid, nice);
        else
            log.LogWarning("ring buffer reader: CAPTURE_NICE={Nice} not applied ({Error}; a negative value needs CAP_SYS_NICE); the reader runs at the default priority",
                nice, Marshal.GetLastPInvokeErrorMessage());
        return tid;
    }

    private static IEnumerable<int> Threads()
    {
        foreach (var dir in Directory.EnumerateDirectories("/proc/self/task"))
            if (int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out var tid))
                yield return tid;
    }

    /// <summary>Field 19 of a stat file; the command name (field 2) may hold spaces and
    /// parentheses, so fields are counted after its last closing parenthesis.</summary>
    public static int NiceOf(string statPath)
    {
        var stat = File.ReadAllText(statPath);
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return int.Parse(fields[19 - 3], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
    }
}
