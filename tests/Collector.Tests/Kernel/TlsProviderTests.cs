using System.Runtime.InteropServices;
using Collector.Configuration;
using Collector.Events;
using Collector.Kernel;
using Collector.Tests.Support;

namespace Collector.Tests.Kernel;

/// <summary>The TLS providers on this machine's real libraries and binaries, against the eBPF
/// object they name programs of, and a probe point's offset, kind and cookie as the kernel holds
/// them once attached.</summary>
public sealed class TlsProviderTests
{
    private const string LibSsl = "/usr/lib/x86_64-linux-gnu/libssl.so.3";
    private const string LibGnuTls = "/usr/lib/x86_64-linux-gnu/libgnutls.so.30";

    private static ElfCandidate Candidate(string path) =>
        new(path, path, ElfSymbols.FindFunctions(path, TlsProviders.Default.SelectMany(p => p.Functions).ToHashSet()));

    private static IReadOnlyList<ProbePoint> Probes<T>(string path) where T : ITlsProvider =>
        TlsProviders.Default.OfType<T>().Single().Probes(Candidate(path));

    [Theory]
    [InlineData(LibSsl)]
    [InlineData("/usr/bin/node")] // OpenSSL linked in, its functions exported
    public void OpenSsl_probes_sit_at_the_functions_the_file_defines(string path)
    {
        var points = Probes<OpenSslProvider>(path);
        var functions = ElfSymbols.FindFunctions(path, new OpenSslProvider().Functions);
        Assert.Contains("SSL_write", functions.Keys);
        Assert.Equal(functions.Keys.Order(), points.Select(p => p.Site).Distinct().Order());
        Assert.All(points, p => Assert.Equal(functions[p.Site], p.FileOffset));
        Assert.All(points, p => Assert.Equal(0UL, p.Cookie));
        // the return probe of a function is attached before its entry probe
        foreach (var site in new[] { "SSL_write", "SSL_read", "SSL_write_ex", "SSL_read_ex" })
        {
            var kinds = points.Where(p => p.Site == site).Select(p => p.Kind).ToArray();
            Assert.Equal([ProbeKind.Return, ProbeKind.Entry], kinds);
        }
        Assert.Empty(Probes<GnuTlsProvider>(path));
    }

    [Fact]
    public void GnuTls_probes_sit_at_gnutls_record_send_and_recv()
    {
        var points = Probes<GnuTlsProvider>(LibGnuTls);
        var functions = ElfSymbols.FindFunctions(LibGnuTls, new GnuTlsProvider().Functions);
        Assert.Equal(
            [("gnutls_record_send", ProbeKind.Return), ("gnutls_record_send", ProbeKind.Entry),
             ("gnutls_record_recv", ProbeKind.Return), ("gnutls_record_recv", ProbeKind.Entry)],
            points.Select(p => (p.Site, p.Kind)));
        Assert.All(points, p => Assert.Equal(functions[p.Site], p.FileOffset));
        Assert.Empty(Probes<OpenSslProvider>(LibGnuTls));
    }

    [Fact]
    public void A_file_without_a_TLS_library_gets_no_probes()
    {
        var file = Candidate("/usr/bin/curl"); // dynamically linked: its TLS is in libssl
        Assert.All(TlsProviders.Default, p => Assert.Empty(p.Probes(file)));
    }

    [Fact]
    public void Each_source_has_a_provider_label_from_the_source_table()
    {
        Assert.Equal([CaptureSources.OpenSsl, CaptureSources.GnuTls], TlsProviders.Default.Select(p => p.Source));
        Assert.Equal(["libssl.so*", "libgnutls.so*"], TlsProviders.Default.SelectMany(p => p.SystemLibraries));
    }

    /// <summary>Every program a provider names is in the object, in both sets, as the kind of probe
    /// the provider attaches it as (SEC("uretprobe") for a return probe, SEC("uprobe") otherwise).</summary>
    [Fact]
    public void Providers_name_programs_of_the_object_with_their_section_kind()
    {
        using var obj = BpfObjectHandle.Open(Path.Combine(Repo.Build, "collector.bpf.o"));
        var points = TlsProviders.Default.SelectMany(p => p.Probes(Candidate(p is GnuTlsProvider ? LibGnuTls : LibSsl))).ToList();
        Assert.NotEmpty(points);
        foreach (var point in points)
        {
            foreach (var name in new[] { point.Program, point.Program + "_compat" })
            {
                var prog = Interop.Libbpf.ObjectFindProgramByName(obj, name);
                Assert.True(prog != IntPtr.Zero, $"program {name} missing from the object");
                var section = Marshal.PtrToStringUTF8(Interop.Libbpf.ProgramSectionName(prog));
                Assert.Equal(point.Kind == ProbeKind.Return ? "uretprobe" : "uprobe", section);
            }
        }
    }
}

/// <summary>A probe point attached in the real kernel: the kernel's own record of the link
/// (bpf_link_info, cookies reported since 6.9) holds the point's offset, kind and cookie.</summary>
[Collection("kernel")]
public sealed unsafe partial class ProbePointAttachTests
{
    [LibraryImport("libbpf.so.1", EntryPoint = "bpf_link__fd")]
    private static partial int LinkFd(IntPtr link);

    [LibraryImport("libbpf.so.1", EntryPoint = "bpf_obj_get_info_by_fd", SetLastError = true)]
    private static partial int ObjGetInfoByFd(int fd, void* info, uint* infoLen);

    private const uint LinkTypePerfEvent = 7;      // BPF_LINK_TYPE_PERF_EVENT
    private const uint PerfEventUprobe = 1;        // BPF_PERF_EVENT_UPROBE
    private const uint PerfEventUretprobe = 2;     // BPF_PERF_EVENT_URETPROBE

    [Fact]
    public void Offset_kind_and_cookie_reach_the_kernel()
    {
        const string lib = "/usr/lib/x86_64-linux-gnu/libssl.so.3";
        var settings = new Settings
        {
            BpfObjectPath = Path.Combine(Repo.Build, "collector.bpf.o"),
            TraceComms = ["no-such-process"], // load and attach, trace nothing
        };
        using var kernel = new KernelCapture(settings, new ListLogger());
        var offsets = ElfSymbols.FindFunctions(lib, ["SSL_write", "SSL_read"]);
        // a probe inside a function must sit on an instruction boundary (other processes on this
        // machine run this library): SSL_read's first instruction here is 4 bytes long
        var head = new byte[4];
        using (var f = File.OpenRead(lib))
        {
            f.Position = (long)offsets["SSL_read"];
            f.ReadExactly(head);
        }
        Assert.True(head is [0xf3, 0x0f, 0x1e, 0xfa] or [0x48, 0x83, 0xec, _],
            $"SSL_read does not begin with endbr64 or sub $imm8,%rsp ({Convert.ToHexString(head)}): pick another boundary");
        ProbePoint[] points =
        [
            new("ssl_write_exit", "SSL_write", offsets["SSL_write"], ProbeKind.Return, Cookie: 0xC0FFEE),
            new("ssl_write_enter", "SSL_write", offsets["SSL_write"], ProbeKind.Entry, Cookie: 0),
            // a uprobe at the second instruction of a function, as a Go RET probe is placed
            new("ssl_read_enter", "SSL_read+4", offsets["SSL_read"] + 4, ProbeKind.AtOffset, Cookie: ulong.MaxValue),
        ];
        var info = stackalloc byte[256];
        foreach (var point in points)
        {
            using var link = kernel.AttachUprobe(point, lib);
            new Span<byte>(info, 256).Clear();
            var len = 256u;
            var fd = LinkFd(link.DangerousGetHandle());
            Assert.True(ObjGetInfoByFd(fd, info, &len) == 0, $"bpf_obj_get_info_by_fd: errno {Marshal.GetLastPInvokeError()}");
            // struct bpf_link_info: type, id, prog_id, then perf_event at 16: type, pad, uprobe {file_name, name_len, offset, cookie}
            Assert.Equal(LinkTypePerfEvent, *(uint*)info);
            Assert.Equal(point.Kind == ProbeKind.Return ? PerfEventUretprobe : PerfEventUprobe, *(uint*)(info + 16));
            Assert.Equal(point.FileOffset, *(uint*)(info + 36));
            Assert.Equal(point.Cookie, *(ulong*)(info + 40));
        }
    }
}
