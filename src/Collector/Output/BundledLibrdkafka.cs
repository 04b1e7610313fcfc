using System.Reflection;
using System.Runtime.InteropServices;

namespace Collector.Output;

/// <summary>The librdkafka that Confluent.Kafka runs on is the one from the librdkafka.redist
/// package published beside the collector, never one the host happens to have.
///
/// Left to itself, Confluent.Kafka asks for "librdkafka" and .NET's probing falls back to the
/// system's library names: the package's default build (runtimes/linux-x64/native/librdkafka.so)
/// links Cyrus SASL as libsasl2.so.3, a name only Red Hat's family ships (Debian's libsasl2-2 is
/// libsasl2.so.2), so on Debian it fails to load and a Debian librdkafka.so, if one is installed
/// (librdkafka-dev), was silently taken instead: 2.0.2 where 2.16.0 was meant. The
/// package's other glibc build, centos8-librdkafka.so, needs nothing but glibc 2.28 (OpenSSL,
/// zstd, lz4 are linked in) and lacks only GSSAPI/Kerberos, which the collector never configures
/// (SASL here is PLAIN). That one is loaded, by its path, on every host; the tests' mock cluster
/// loads the same file.</summary>
public static class BundledLibrdkafka
{
    public const string FileName = "centos8-librdkafka.so";

    /// <summary>The librdkafka.redist version the collector was built with (Collector.csproj).</summary>
    public static string ExpectedVersion { get; } =
        typeof(BundledLibrdkafka).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .Single(a => a.Key == "LibrdkafkaVersion").Value!;

    /// <summary>Where the package's file is in a folder the collector runs from: beside the binary
    /// in a publish for linux-x64 (scripts/build-release.sh: ReadyToRun needs a runtime identifier,
    /// and a RID-specific publish puts that RID's native files at the top), under
    /// runtimes/linux-x64/native in a portable build (dotnet build, the tests' output).</summary>
    public static string PathIn(string baseDirectory)
    {
        // told apart by the folder, not the file: a missing file is reported where it belongs
        var nested = Path.Combine(baseDirectory, "runtimes", "linux-x64", "native");
        return Path.Combine(Directory.Exists(nested) ? nested : baseDirectory, FileName);
    }

    public static string DefaultPath => PathIn(AppContext.BaseDirectory);

    /// <summary>The loaded library (<see cref="Load"/> first), for the C functions the collector
    /// calls itself (<see cref="RdKafkaProducer"/>).</summary>
    internal static IntPtr Handle
    {
        get
        {
            Load();
            return _handle;
        }
    }

    private static readonly object Gate = new();
    private static IntPtr _handle;
    private static bool _resolverSet;

    /// <summary>Loads the bundled library (once) and makes Confluent.Kafka use it. Throws
    /// <see cref="LibrdkafkaException"/> when it cannot be loaded or is not the expected version.
    /// Must run before the first use of Confluent.Kafka: the client binds its native methods once.</summary>
    public static LoadedLibrdkafka Load()
    {
        lock (Gate)
        {
            var path = DefaultPath;
            if (_handle == IntPtr.Zero)
            {
                if (!File.Exists(path))
                    throw new LibrdkafkaException($"cannot load the bundled librdkafka: {path} is missing (an incomplete publish folder)");
                try
                {
                    _handle = NativeLibrary.Load(path);
                }
                catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
                {
                    throw new LibrdkafkaException($"cannot load the bundled librdkafka {path}: {e.Message}");
                }
            }
            if (!_resolverSet)
            {
                // every name the client's native method tables ask for (default, centos8, alpine builds)
                NativeLibrary.SetDllImportResolver(typeof(Confluent.Kafka.Library).Assembly,
                    (name, _, _) => name.Contains("rdkafka", StringComparison.Ordinal) ? _handle : IntPtr.Zero);
                _resolverSet = true;
            }
            var version = Confluent.Kafka.Library.VersionString;
            if (version != ExpectedVersion)
                throw new LibrdkafkaException(
                    $"Confluent.Kafka runs on librdkafka {version}, not the bundled {ExpectedVersion} ({path}): it was bound to another library before the collector chose its own");
            return new LoadedLibrdkafka(version, path);
        }
    }
}

public sealed record LoadedLibrdkafka(string Version, string Path);

public sealed class LibrdkafkaException(string message) : Exception(message);
