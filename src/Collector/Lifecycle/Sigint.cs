using Collector.Kernel;

namespace Collector.Lifecycle;

/// <summary>SIGINT stops the collector like SIGTERM, also when the parent left SIGINT ignored: a
/// background job of a non-interactive shell (`collector &amp;` in a script) starts with SIGINT
/// ignored, and .NET then never installs its handler, so PosixSignalRegistration would silently
/// not fire. Called first thing in Main, before .NET sets up its signal handling.</summary>
internal static unsafe class Sigint
{
    private const int SigInt = 2;
    private static readonly IntPtr SigDfl = 0;
    private static readonly IntPtr SigIgn = 1;

    /// <summary>Resets an ignored SIGINT to the default; true when it was ignored.</summary>
    public static bool Unignore()
    {
        if (Handler() != SigIgn) return false;
        Interop.Libc.Signal(SigInt, SigDfl);
        return true;
    }

    /// <summary>Whether a handler (rather than the default or ignore) is installed now.</summary>
    public static bool HandlerInstalled()
    {
        var h = Handler();
        return h != SigDfl && h != SigIgn;
    }

    private static IntPtr Handler()
    {
        var old = stackalloc byte[256]; // glibc's struct sigaction is 152 bytes on x86_64 and arm64
        if (Interop.Libc.Sigaction(SigInt, null, old) != 0) return SigDfl;
        return *(IntPtr*)old;
    }
}
