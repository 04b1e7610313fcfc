using System.Runtime.InteropServices;

namespace Collector.Sensitive;

/// <summary>OpenSSL's SHA-256 primitives in libcrypto.so.3, which .NET's own cryptography loads
/// already. Bound by name when the library and its exports are there (<see cref="Instance"/> is
/// null when not): the keyed hash then falls back to <see cref="System.Security.Cryptography.IncrementalHash"/>.</summary>
internal sealed unsafe class Libcrypto
{
    /// <summary>sizeof(SHA256_CTX) in OpenSSL 3 is 112 bytes (h[8], Nl, Nh, data[16], num, md_len);
    /// a state is kept and copied in this many bytes, room to spare.</summary>
    public const int StateBytes = 256;

    public static readonly Libcrypto? Instance = Load();

    // each call hashes at most a few hundred bytes (KeyedHash feeds longer values in pieces):
    // short enough to run without the GC transition
    public readonly delegate* unmanaged[SuppressGCTransition]<byte*, int> Sha256Init;
    public readonly delegate* unmanaged[SuppressGCTransition]<byte*, byte*, nuint, int> Sha256Update;
    public readonly delegate* unmanaged[SuppressGCTransition]<byte*, byte*, int> Sha256Final;

    private Libcrypto(IntPtr init, IntPtr update, IntPtr final)
    {
        Sha256Init = (delegate* unmanaged[SuppressGCTransition]<byte*, int>)init;
        Sha256Update = (delegate* unmanaged[SuppressGCTransition]<byte*, byte*, nuint, int>)update;
        Sha256Final = (delegate* unmanaged[SuppressGCTransition]<byte*, byte*, int>)final;
    }

    private static Libcrypto? Load()
    {
        if (!NativeLibrary.TryLoad("libcrypto.so.3", typeof(Libcrypto).Assembly, null, out var lib)) return null;
        return NativeLibrary.TryGetExport(lib, "SHA256_Init", out var init) &&
               NativeLibrary.TryGetExport(lib, "SHA256_Update", out var update) &&
               NativeLibrary.TryGetExport(lib, "SHA256_Final", out var final)
            ? new Libcrypto(init, update, final)
            : null;
    }
}
