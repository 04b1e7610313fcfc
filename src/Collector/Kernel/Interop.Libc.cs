using System.Runtime.InteropServices;

namespace Collector.Kernel;

internal static unsafe partial class Interop
{
    /// <summary>The few libc calls .NET does not expose.</summary>
    internal static partial class Libc
    {
        // va_list on x86_64 is an array type and so travels as a pointer: libbpf's print callback
        // hands it to us and vsnprintf formats it.
        [LibraryImport("libc", EntryPoint = "vsnprintf")]
        internal static partial int Vsnprintf(byte* buffer, nuint size, IntPtr format, IntPtr args);

        [LibraryImport("libc", EntryPoint = "stat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
        internal static partial int Stat(string path, byte* statBuffer);

        [LibraryImport("libc", EntryPoint = "mount", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
        internal static partial int Mount(string source, string target, string fstype, ulong flags, IntPtr data);

        /// <summary>glibc's struct sigaction; only sa_handler (its first field) is read here.</summary>
        [LibraryImport("libc", EntryPoint = "sigaction", SetLastError = true)]
        internal static partial int Sigaction(int signal, byte* action, byte* oldAction);

        internal const int PrioProcess = 0;

        /// <summary>With PRIO_PROCESS and a thread id, Linux sets that one thread's nice value.</summary>
        [LibraryImport("libc", EntryPoint = "setpriority", SetLastError = true)]
        internal static partial int Setpriority(int which, uint who, int prio);

        internal const int SchedOther = 0, SchedResetOnFork = 0x40000000;

        /// <summary>pid 0: the calling thread. param points at struct sched_param (one int).</summary>
        [LibraryImport("libc", EntryPoint = "sched_setscheduler", SetLastError = true)]
        internal static partial int SchedSetscheduler(int pid, int policy, int* param);

        [LibraryImport("libc", EntryPoint = "gettid")]
        internal static partial int Gettid();

        [LibraryImport("libc", EntryPoint = "signal")]
        internal static partial IntPtr Signal(int signal, IntPtr handler);
    }
}
