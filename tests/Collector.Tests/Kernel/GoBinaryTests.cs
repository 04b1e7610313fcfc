using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Collector.Kernel.Go;
using Collector.Tests.Support;
using Iced.Intel;
using Xunit.Abstractions;

namespace Collector.Tests.Kernel;

/// <summary>The Go binary analysis against real Go programs: tests/Peers/go-tls built by every
/// Debian Go toolchain in every form (default, stripped, PIE, stripped PIE, cgo off, and with Go
/// 1.23 externally linked PIE), checked against the toolchain's own tools (go version, go tool nm),
/// binutils (readelf, objdump) and each stripped build's unstripped twin; the offsets table against
/// what each toolchain lays out; and damaged copies, which must give an answer, never an exception.</summary>
public sealed class GoBinaryTests(ITestOutputHelper output)
{
    public static TheoryData<string, string> AllBuilds() => Data(GoPeers.Builds());

    public static TheoryData<string, string> UnstrippedBuilds() => Data(GoPeers.Builds().Where(b => !b.Form.Contains("strip")));

    public static TheoryData<string, string> StrippedBuilds() => Data(GoPeers.Builds().Where(b => GoPeers.UnstrippedTwin(b.Form) is not null));

    public static TheoryData<string> OffsetToolchains() => new(GoPeers.Toolchains.Append(GoPeers.TooOldToolchain));

    private static TheoryData<string, string> Data(IEnumerable<(string Version, string Form)> builds)
    {
        var d = new TheoryData<string, string>();
        foreach (var (v, f) in builds) d.Add(v, f);
        return d;
    }

    [Theory]
    [MemberData(nameof(AllBuilds))]
    public void Every_build_gives_its_version_functions_returns_itab_and_offsets(string version, string form)
    {
        var path = GoPeers.TlsPeer(version, form);
        var r = GoBinary.Analyze(path);
        Assert.True(r.Status == GoBinaryStatus.Supported, $"{r.Status}: {r.Reason}");
        Assert.Equal(ToolchainVersion(version), r.Version);
        Assert.StartsWith(form.Contains("strip") ? "pclntab" : "symbol table", r.FunctionSource);

        var bytes = File.ReadAllBytes(path);
        var loads = LoadSegments(path);
        foreach (var f in new[] { r.Read, r.Write })
        {
            Assert.NotNull(f);
            Assert.Equal(FileOffsetOf(loads, f.Vaddr), f.FileOffset);
            AssertRegisterAbiEntry(bytes, f);
            Assert.NotEmpty(f.ReturnOffsets);
            foreach (var ret in f.ReturnOffsets)
            {
                Assert.InRange(ret, f.FileOffset, f.FileOffset + f.Size - 1);
                Assert.Equal(0xC3, bytes[ret]);
            }
        }
        Assert.True(r.ConnItab is not null, r.ConnItabProblem);
        Assert.NotNull(r.FdOffsets);
        Assert.True(r.FdOffsets.Verified);
        Assert.Equal($"table for go{version}", r.FdOffsets.Source);
    }

    [Theory]
    [MemberData(nameof(UnstrippedBuilds))]
    public void Symbols_pclntab_moduledata_go_tool_nm_and_objdump_agree(string version, string form)
    {
        var path = GoPeers.TlsPeer(version, form);
        var r = GoBinary.Analyze(path);
        Assert.True(r.Status == GoBinaryStatus.Supported, $"{r.Status}: {r.Reason}");
        var nm = Nm(version, path);
        Assert.Equal(nm[GoBinary.ReadFunction], r.Read!.Vaddr);
        Assert.Equal(nm[GoBinary.WriteFunction], r.Write!.Vaddr);
        var itabSymbol = nm.TryGetValue("go:itab.*net.TCPConn,net.Conn", out var a) ? a : nm["go.itab.*net.TCPConn,net.Conn"];
        Assert.Equal(itabSymbol, r.ConnItab!.Vaddr);

        // the same file read the stripped way: pclntab instead of symbols, moduledata instead of the itab symbol
        using (var elf = ElfImage.Open(path, out _)!)
        {
            var tab = GoPclnTab.Locate(elf);
            Assert.Equal(form == "extpie" ? "header scan" : form == "pie" ? ".data.rel.ro.gopclntab" : ".gopclntab", tab.FoundIn);
            var found = tab.Find([GoBinary.ReadFunction, GoBinary.WriteFunction]);
            Assert.Equal(nm[GoBinary.ReadFunction], found[GoBinary.ReadFunction].Entry);
            Assert.Equal(nm[GoBinary.WriteFunction], found[GoBinary.WriteFunction].Entry);
            // the table's size runs to the next function: the symbol's, plus int3 padding
            Assert.InRange(found[GoBinary.ReadFunction].Size, r.Read.Size, r.Read.Size + 31);
            var (itab, problem) = GoItabs.Find(elf, new Dictionary<string, (ulong, ulong)>(), () => tab, Minor(version));
            Assert.True(itab is not null, problem);
            Assert.Equal(itabSymbol, itab.Vaddr);
        }

        foreach (var f in new[] { r.Read, r.Write })
        {
            var rets = ObjdumpReturns(path, f.Vaddr, f.Vaddr + f.Size).Select(va => va - f.Vaddr + f.FileOffset);
            Assert.Equal(rets, f.ReturnOffsets);
        }
    }

    [Theory]
    [MemberData(nameof(StrippedBuilds))]
    public void A_stripped_build_gives_what_its_unstripped_twin_gives(string version, string form)
    {
        var s = GoBinary.Analyze(GoPeers.TlsPeer(version, form));
        var u = GoBinary.Analyze(GoPeers.TlsPeer(version, GoPeers.UnstrippedTwin(form)!));
        Assert.True(s.Status == GoBinaryStatus.Supported, $"{s.Status}: {s.Reason}");
        Assert.Equal(u.Version, s.Version);
        foreach (var (a, b) in new[] { (u.Read!, s.Read!), (u.Write!, s.Write!) })
        {
            Assert.Equal(a.Vaddr, b.Vaddr);
            Assert.Equal(a.FileOffset, b.FileOffset);
            Assert.Equal(a.ReturnOffsets, b.ReturnOffsets);
        }
        Assert.Equal(u.ConnItab!.Vaddr, s.ConnItab!.Vaddr);
        Assert.StartsWith("symbol", u.ConnItab.Source);
        Assert.StartsWith("itablinks", s.ConnItab.Source);
    }

    [Fact]
    public void Go_1_15_is_too_old_and_says_its_version()
    {
        var r = GoBinary.Analyze(GoPeers.TlsPeer(GoPeers.TooOldToolchain, "default"));
        Assert.Equal(GoBinaryStatus.TooOld, r.Status);
        Assert.Equal(ToolchainVersion(GoPeers.TooOldToolchain), r.Version);
        Assert.StartsWith("go1.15.", r.Version);
        Assert.Contains("register ABI", r.Reason);
        Assert.Null(r.Read);
        Assert.Null(r.Write);
    }

    [Theory]
    [InlineData("/usr/bin/curl")]
    [InlineData("/usr/lib/x86_64-linux-gnu/libssl.so.3")]
    [InlineData("/usr/bin/node")]
    public void Other_programs_are_not_go_and_cost_little(string path)
    {
        Assert.Equal(GoBinaryStatus.NotGo, GoBinary.Analyze(path).Status);
        const int N = 200;
        var sw = Stopwatch.StartNew();
        for (var i = 0; i < N; i++) GoBinary.Analyze(path);
        var perFile = sw.Elapsed.TotalMilliseconds / N;
        output.WriteLine($"{path}: {perFile:F3} ms per analysis");
        // it reads the ELF and section headers only: tens of microseconds; the bound leaves room for a loaded machine
        Assert.True(perFile < 5, $"{perFile} ms");
    }

    [Fact]
    public void Files_that_are_not_elf_are_not_go()
    {
        var dir = Repo.TempDir("go-notelf");
        foreach (var (name, content) in new[] { ("empty", Array.Empty<byte>()), ("short", new byte[] { 0x7F, (byte)'E', (byte)'L', (byte)'F', 2, 1 }), ("text", System.Text.Encoding.ASCII.GetBytes(new string('x', 4096))) })
        {
            var path = Path.Combine(dir, name);
            File.WriteAllBytes(path, content);
            var r = GoBinary.Analyze(path);
            Assert.Equal(GoBinaryStatus.NotGo, r.Status);
            Assert.Equal("not an ELF file", r.Reason);
        }
    }

    /// <summary>Go programs nobody here built: Debian's own (the go command of each toolchain,
    /// Prometheus), as they come, must be read like the test builds.</summary>
    [Theory]
    [InlineData("/usr/lib/go-1.23/bin/go")]
    [InlineData("/usr/lib/go-1.19/bin/go")]
    [InlineData("/usr/bin/prometheus")]
    public void Debian_go_programs_are_read(string path)
    {
        var r = GoBinary.Analyze(path);
        Assert.True(r.Status == GoBinaryStatus.Supported, $"{r.Status}: {r.Reason}");
        output.WriteLine($"{path}: {r.Version}, {r.FunctionSource}, itab {r.ConnItab?.Source}");
        var bytes = File.ReadAllBytes(path);
        foreach (var f in new[] { r.Read, r.Write })
        {
            Assert.NotNull(f);
            AssertRegisterAbiEntry(bytes, f);
            Assert.All(f.ReturnOffsets, ret => Assert.Equal(0xC3, bytes[ret]));
        }
        Assert.True(r.ConnItab is not null, r.ConnItabProblem);
    }

    [Theory]
    [InlineData("/usr/lib/go-1.23/bin/gofmt", "go1.23.")]
    [InlineData("/usr/lib/go-1.19/bin/gofmt", "go1.19.")]
    public void A_go_program_without_tls_says_so(string path, string version)
    {
        var r = GoBinary.Analyze(path);
        Assert.Equal(GoBinaryStatus.NoTls, r.Status);
        Assert.StartsWith(version, r.Version);
        Assert.Null(r.Read);
    }

    /// <summary>Go binaries this analysis does not read say what they are: one whose build info
    /// section is gone (renamed here; Go before 1.13 writes none), one for another architecture.</summary>
    [Fact]
    public void Go_binaries_it_cannot_read_are_unsupported_with_a_reason()
    {
        var src = GoPeers.TlsPeer("1.23", "strip");
        var bytes = File.ReadAllBytes(src);
        var name = "\0.go.buildinfo\0"u8.ToArray();
        var at = bytes.AsSpan().LastIndexOf(name);
        Assert.True(at > 0);
        var copy = CopyToTemp(src);
        using (var fs = new FileStream(copy, FileMode.Open, FileAccess.ReadWrite))
        {
            fs.Position = at + name.Length - 2;
            fs.WriteByte((byte)'X'); // .go.buildinfX
        }
        var r = GoBinary.Analyze(copy);
        Assert.Equal((GoBinaryStatus.Unsupported, (string?)null), (r.Status, r.Version));
        Assert.Contains("without build info", r.Reason);

        copy = CopyToTemp(src);
        using (var fs = new FileStream(copy, FileMode.Open, FileAccess.ReadWrite))
        {
            fs.Position = 0x12; // e_machine
            fs.Write([183, 0]); // EM_AARCH64
        }
        r = GoBinary.Analyze(copy);
        Assert.Equal((GoBinaryStatus.Unsupported, "go1.23.5"), (r.Status, r.Version));
        Assert.StartsWith("arm64", r.Reason);
    }

    [Theory]
    [MemberData(nameof(OffsetToolchains))]
    public void The_offsets_table_is_what_each_toolchain_lays_out(string version)
    {
        var (code, o, e) = Shell.Run(GoPeers.OffsetsProgram(version), "");
        Assert.True(code == 0, e + o);
        var lines = o.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("ok", lines[^1]);
        var printed = lines[..^1].Select(l => l.Split(' ')).ToDictionary(p => p[0], p => long.Parse(p[1], CultureInfo.InvariantCulture));
        // 1.15 is not probed; its layout is compared with the first row to show the fields had not moved
        var row = GoStructOffsets.For(Math.Max(Minor(version), GoBinary.MinMinorVersion))!;
        Assert.Equal(row.TlsConnConn, printed["tls.Conn.conn"]);
        Assert.Equal(row.IfaceItab, printed["iface.itab"]);
        Assert.Equal(row.IfaceData, printed["iface.data"]);
        Assert.Equal(row.TcpConnFd, printed["net.TCPConn.fd"]);
        Assert.Equal(row.NetFdSysfd, printed["net.netFD.Sysfd"]);
        Assert.Equal(8, printed["Sysfd.size"]);
        Assert.Equal(printed["runtime.fd"], printed["chain.fd"]);
        if (version != GoPeers.TooOldToolchain) Assert.True(GoStructOffsets.For(Minor(version))!.Verified);
    }

    [Fact]
    public void Rows_marked_verified_are_exactly_the_toolchains_tested()
    {
        var verified = GoStructOffsets.Table.Where(r => r.Value.Verified).Select(r => $"1.{r.Key}").Order();
        Assert.Equal(GoPeers.Toolchains.Order(), verified);
        Assert.Null(GoStructOffsets.For(16));
        var newer = GoStructOffsets.For(99)!;
        Assert.False(newer.Verified);
        Assert.Contains("assumed for go1.99", newer.Source);
    }

    /// <summary>A PIE whose linker left textStart 0 for the loader to fill (lld does without
    /// --apply-dynamic-relocs) is read through the relocation that fills it.</summary>
    [Fact]
    public void A_pie_text_start_left_to_the_loader_comes_from_its_relocation()
    {
        var src = GoPeers.TlsPeer("1.23", "piestrip");
        var copy = CopyToTemp(src);
        var pclntab = SectionOffset(src, ".data.rel.ro.gopclntab");
        using (var fs = new FileStream(copy, FileMode.Open, FileAccess.ReadWrite))
        {
            fs.Position = pclntab + 24; // textStart, the third word after the 8-byte prefix
            fs.Write(new byte[8]);
        }
        var original = GoBinary.Analyze(src);
        var r = GoBinary.Analyze(copy);
        Assert.True(r.Status == GoBinaryStatus.Supported, $"{r.Status}: {r.Reason}");
        Assert.Equal(original.Read!.FileOffset, r.Read!.FileOffset);
        Assert.Equal(original.Write!.ReturnOffsets, r.Write!.ReturnOffsets);
    }

    [Theory]
    [InlineData(0, 0xFFFFFFF2u, GoBinaryStatus.Unsupported, "unknown pclntab magic")]
    [InlineData(0, 0xFFFFFFF0u, GoBinaryStatus.Invalid, "does not match build info")]
    [InlineData(4, 0x08040000u, GoBinaryStatus.Invalid, "not x86-64")]
    [InlineData(8, 0x7FFFFFFFu, GoBinaryStatus.Invalid, "functions")]
    [InlineData(24, 0x1000u, GoBinaryStatus.Invalid, "not in an executable segment")]
    [InlineData(32, 0x7FFFFFF0u, GoBinaryStatus.Invalid, "out of order")]
    [InlineData(64, 0x7FFFFFF0u, GoBinaryStatus.Invalid, "out of order")]
    public void A_damaged_pclntab_header_is_an_answer(int at, uint value, GoBinaryStatus status, string reason)
    {
        foreach (var form in new[] { "strip", "extpiestrip" })
        {
            var src = GoPeers.TlsPeer("1.23", form);
            var header = form == "strip" ? SectionOffset(src, ".gopclntab") : PclnHeaderByScan(src);
            var copy = CopyToTemp(src);
            using (var fs = new FileStream(copy, FileMode.Open, FileAccess.ReadWrite))
            {
                var b = new byte[at is 0 or 4 ? 4 : 8];
                if (b.Length == 4) BinaryPrimitives.WriteUInt32LittleEndian(b, value);
                else BinaryPrimitives.WriteUInt64LittleEndian(b, value);
                fs.Position = header + at;
                fs.Write(b);
            }
            var r = GoBinary.Analyze(copy);
            // with the header's fixed bytes changed, a scan no longer finds a header at all
            if (form == "extpiestrip" && at == 4) Assert.Equal((GoBinaryStatus.Invalid, "no pclntab found"), (r.Status, r.Reason![..16]));
            else
            {
                Assert.True(r.Status == status, $"{form}: {r.Status}: {r.Reason}");
                Assert.Contains(reason, r.Reason);
            }
            Assert.Equal("go1.23.5", r.Version);
        }
    }

    [Fact]
    public void A_damaged_build_info_is_an_answer()
    {
        var src = GoPeers.TlsPeer("1.23", "strip");
        var info = SectionOffset(src, ".go.buildinfo");
        foreach (var (at, value, reason) in new[] { (32, (byte)0xFF, "version length"), (15, (byte)0, "address 0x0"), (36, (byte)0x01, "printable") })
        {
            var copy = CopyToTemp(src);
            using (var fs = new FileStream(copy, FileMode.Open, FileAccess.ReadWrite))
            {
                fs.Position = info + at;
                fs.WriteByte(value);
            }
            var r = GoBinary.Analyze(copy);
            Assert.True(r.Status == GoBinaryStatus.Invalid, $"{r.Status}: {r.Reason}");
            Assert.Contains(reason, r.Reason);
        }
    }

    /// <summary>Header fields that size a loop or an allocation, set to what no linker writes.</summary>
    [Fact]
    public void Hostile_header_sizes_are_an_answer()
    {
        var src = GoPeers.TlsPeer("1.23", "default");
        var bytes = File.ReadAllBytes(src);
        var shoff = BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(0x28));
        var shnum = BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(0x3C));
        var symtab = Enumerable.Range(0, shnum).Select(i => shoff + i * 64L)
            .Single(h => BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan((int)h + 4)) == 2);
        foreach (var (at, value, reason) in new (long, byte[], string)[]
                 {
                     (symtab + 0x38, BitConverter.GetBytes(0x1_0000_0000L), "entry size"), // sh_entsize 2^32: 0 as an int
                     (symtab + 0x20, BitConverter.GetBytes(long.MaxValue), "beyond what a real binary has"), // sh_size
                     (0x3A, BitConverter.GetBytes((ushort)0xFFFF), "section headers out of the file"), // e_shentsize
                     (0x36, BitConverter.GetBytes((ushort)0xFFFF), "program headers out of the file"), // e_phentsize
                     (0x38, BitConverter.GetBytes((ushort)0xFFFF), "program headers out of the file"), // e_phnum
                 })
        {
            var copy = CopyToTemp(src);
            using (var fs = new FileStream(copy, FileMode.Open, FileAccess.ReadWrite))
            {
                fs.Position = at;
                fs.Write(value);
            }
            var r = GoBinary.Analyze(copy);
            Assert.True(r.Status == GoBinaryStatus.Invalid, $"{at:x}: {r.Status}: {r.Reason}");
            Assert.Contains(reason, r.Reason);
        }
    }

    /// <summary>Copies cut short at many points, as they are (Go's linker puts the section headers
    /// at the start and their names at the end, GNU ld both at the end), and with the section headers
    /// and their names put back after the cut, so that every table they name points past the end and
    /// each read's own bounds check is what answers.</summary>
    [Theory]
    [InlineData("default")]
    [InlineData("strip")]
    [InlineData("piestrip")]
    [InlineData("extpiestrip")]
    public void Truncated_copies_give_an_answer_not_an_exception(string form)
    {
        var src = GoPeers.TlsPeer("1.23", form);
        var bytes = File.ReadAllBytes(src);
        var original = GoBinary.Analyze(src);
        var shoff = (int)BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(0x28));
        var shnum = BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(0x3C));
        var shstrndx = BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(0x3E));
        var headers = bytes.AsSpan(shoff, shnum * 64).ToArray();
        var namesOff = (int)BinaryPrimitives.ReadInt64LittleEndian(headers.AsSpan(shstrndx * 64 + 0x18));
        var namesSize = (int)BinaryPrimitives.ReadInt64LittleEndian(headers.AsSpan(shstrndx * 64 + 0x20));
        var names = bytes.AsSpan(namesOff, namesSize).ToArray();
        var path = Path.Combine(Repo.TempDir("go-truncated"), "cut");
        var statuses = new List<string>();
        foreach (var fraction in new[] { 0.0, 0.00001, 0.0001, 0.001, 0.01, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999 })
        {
            var cut = (int)(bytes.Length * fraction);
            File.WriteAllBytes(path, bytes.AsSpan(0, cut).ToArray());
            var r = GoBinary.Analyze(path);
            Assert.True(r.Status is GoBinaryStatus.NotGo or GoBinaryStatus.Invalid, $"cut at {cut}: {r.Status}: {r.Reason}");
            Assert.False(string.IsNullOrEmpty(r.Reason));
            statuses.Add($"{cut}: {r.Status} {r.Reason}");

            if (cut < 64) continue;
            var movedHeaders = headers.ToArray();
            BinaryPrimitives.WriteInt64LittleEndian(movedHeaders.AsSpan(shstrndx * 64 + 0x18), cut);
            var patched = bytes.AsSpan(0, cut).ToArray().Concat(names).Concat(movedHeaders).ToArray();
            BinaryPrimitives.WriteInt64LittleEndian(patched.AsSpan(0x28), cut + names.Length);
            File.WriteAllBytes(path, patched);
            r = GoBinary.Analyze(path);
            if (r.Status == GoBinaryStatus.Supported)
            {
                // a cut past everything the analysis reads (near the end of a stripped file) changes nothing
                Assert.Equal(original.Read!.ReturnOffsets, r.Read!.ReturnOffsets);
                Assert.Equal(original.Write!.ReturnOffsets, r.Write!.ReturnOffsets);
                // the data the itab search reads may be what was cut: then no itab, and a reason
                if (r.ConnItab is null) Assert.False(string.IsNullOrEmpty(r.ConnItabProblem));
                else Assert.Equal(original.ConnItab!.Vaddr, r.ConnItab.Vaddr);
                statuses.Add($"{cut} headers kept: Supported, itab {r.ConnItab?.Vaddr.ToString("x") ?? r.ConnItabProblem}");
            }
            else
            {
                Assert.True(r.Status is GoBinaryStatus.NotGo or GoBinaryStatus.Invalid, $"cut at {cut}, headers kept: {r.Status}: {r.Reason}");
                Assert.False(string.IsNullOrEmpty(r.Reason));
                statuses.Add($"{cut} headers kept: {r.Status} {r.Reason}");
            }
        }
        foreach (var s in statuses) output.WriteLine(s);
    }

    /// <summary>Random bytes changed in the places the analysis reads (ELF headers, build info,
    /// pclntab, moduledata and type data, the functions' code), or a stretch of the file zeroed
    /// anywhere: whatever comes out is an answer,
    /// and a Supported answer only names RET bytes that are there.</summary>
    [Theory]
    [InlineData("strip")]
    [InlineData("default")]
    [InlineData("extpiestrip")]
    public void Random_damage_gives_an_answer_not_an_exception(string form)
    {
        var src = GoPeers.TlsPeer("1.23", form);
        var original = File.ReadAllBytes(src);
        var r0 = GoBinary.Analyze(src);
        var pcln = form == "extpiestrip" ? PclnHeaderByScan(src) : SectionOffset(src, ".gopclntab");
        var regions = new List<(long Start, long Length)>
        {
            (0, 64),
            (BinaryPrimitives.ReadInt64LittleEndian(original.AsSpan(0x20)), 56 * 12),
            (BinaryPrimitives.ReadInt64LittleEndian(original.AsSpan(0x28)), original.Length - BinaryPrimitives.ReadInt64LittleEndian(original.AsSpan(0x28))),
            (SectionOffset(src, ".go.buildinfo"), 64),
            (pcln, 72),
            (pcln + 0x100, 0x4000),
            ((long)r0.Read!.FileOffset, (long)r0.Read.Size),
            ((long)r0.Write!.FileOffset, (long)r0.Write.Size),
        };
        if (SectionOffsetOrNull(src, ".noptrdata") is { } nd) regions.Add((nd, 0x2000));
        var copy = CopyToTemp(src);
        var rng = new Random(14);
        var outcomes = new Dictionary<GoBinaryStatus, int>();
        using var fs = new FileStream(copy, FileMode.Open, FileAccess.ReadWrite);
        for (var run = 0; run < 150; run++)
        {
            var changed = new List<long>();
            if (run % 5 == 4)
            {
                // a zeroed stretch anywhere in the file (a page-sized hole)
                var at = rng.NextInt64(original.Length - 65536);
                var length = rng.Next(4096, 65536);
                fs.Position = at;
                fs.Write(new byte[length]);
                for (var i = 0; i < length; i++) changed.Add(at + i);
            }
            else
            {
                var (start, length) = regions[rng.Next(regions.Count)];
                for (var k = rng.Next(1, 9); k > 0; k--)
                {
                    var at = start + rng.NextInt64(length);
                    fs.Position = at;
                    fs.WriteByte((byte)rng.Next(256));
                    changed.Add(at);
                }
            }
            fs.Flush();
            var r = GoBinary.Analyze(copy);
            outcomes[r.Status] = outcomes.GetValueOrDefault(r.Status) + 1;
            if (r.Status == GoBinaryStatus.Supported)
            {
                var now = File.ReadAllBytes(copy);
                foreach (var f in new[] { r.Read, r.Write })
                    if (f is not null) Assert.All(f.ReturnOffsets, ret => Assert.True(now[ret] is 0xC3 or 0xC2));
            }
            else Assert.False(string.IsNullOrEmpty(r.Reason));
            foreach (var at in changed)
            {
                fs.Position = at;
                fs.WriteByte(original[at]);
            }
            fs.Flush();
        }
        output.WriteLine(string.Join(", ", outcomes.Select(kv => $"{kv.Key} {kv.Value}")));
        Assert.Equal(r0.Read!.ReturnOffsets, GoBinary.Analyze(copy).Read!.ReturnOffsets);
    }

    [Fact]
    public void Analysis_time_per_binary()
    {
        var lines = new List<string>();
        foreach (var (version, form) in GoPeers.Builds())
        {
            var path = GoPeers.TlsPeer(version, form);
            GoBinary.Analyze(path);
            const int N = 20;
            var sw = Stopwatch.StartNew();
            for (var i = 0; i < N; i++) GoBinary.Analyze(path);
            var ms = sw.Elapsed.TotalMilliseconds / N;
            lines.Add($"go{version} {form}: {ms:F2} ms");
            // a few ms here; the bound only catches a read of whole files or a quadratic scan
            Assert.True(ms < 100, $"go{version} {form}: {ms} ms");
        }
        foreach (var l in lines) output.WriteLine(l);
    }

    // ---- independent references: the toolchain, binutils, the file itself ----

    private static int Minor(string version) => int.Parse(version.Split('.')[1], CultureInfo.InvariantCulture);

    /// <summary>"go1.23.5": what the toolchain says it is.</summary>
    private static string ToolchainVersion(string version)
    {
        var (code, o, e) = Shell.Run(GoPeers.GoTool(version), "version", env: GoPeers.GoEnv.ToDictionary());
        Assert.True(code == 0, e);
        return o.Split(' ')[2];
    }

    /// <summary>Symbol → address from `go tool nm` of the toolchain that built the file.</summary>
    private static Dictionary<string, ulong> Nm(string version, string path)
    {
        var (code, o, e) = Shell.Run(GoPeers.GoTool(version), $"tool nm {path}", TimeSpan.FromMinutes(2), env: GoPeers.GoEnv.ToDictionary());
        Assert.True(code == 0, e);
        var result = new Dictionary<string, ulong>();
        foreach (Match m in Regex.Matches(o, @"^\s*([0-9a-f]+)\s+\S\s+(.+)$", RegexOptions.Multiline))
            result.TryAdd(m.Groups[2].Value.TrimEnd('\r'), ulong.Parse(m.Groups[1].Value, NumberStyles.HexNumber));
        return result;
    }

    /// <summary>Addresses of the RET instructions objdump finds in [start, stop).</summary>
    private static List<ulong> ObjdumpReturns(string path, ulong start, ulong stop)
    {
        var o = Shell.Check("objdump", $"-d --start-address=0x{start:x} --stop-address=0x{stop:x} {path}", TimeSpan.FromMinutes(2));
        return Regex.Matches(o, @"^\s*([0-9a-f]+):\s+c3\s+ret", RegexOptions.Multiline)
            .Select(m => ulong.Parse(m.Groups[1].Value, NumberStyles.HexNumber)).ToList();
    }

    /// <summary>(file offset, vaddr, file size) of each LOAD program header, from readelf.</summary>
    private static List<(ulong Offset, ulong Vaddr, ulong FileSize)> LoadSegments(string path) =>
        Regex.Matches(Shell.Check("readelf", $"-lW {path}"), @"^\s*LOAD\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+0x[0-9a-f]+\s+0x([0-9a-f]+)", RegexOptions.Multiline)
            .Select(m => (ulong.Parse(m.Groups[1].Value, NumberStyles.HexNumber), ulong.Parse(m.Groups[2].Value, NumberStyles.HexNumber),
                ulong.Parse(m.Groups[3].Value, NumberStyles.HexNumber))).ToList();

    private static ulong FileOffsetOf(List<(ulong Offset, ulong Vaddr, ulong FileSize)> loads, ulong vaddr)
    {
        var l = loads.Single(l => vaddr >= l.Vaddr && vaddr < l.Vaddr + l.FileSize);
        return vaddr - l.Vaddr + l.Offset;
    }

    private static long SectionOffset(string path, string name) =>
        SectionOffsetOrNull(path, name) ?? throw new InvalidOperationException($"{path} has no section {name}");

    private static long? SectionOffsetOrNull(string path, string name)
    {
        var m = Regex.Match(Shell.Check("readelf", $"-SW {path}"), @"\]\s+" + Regex.Escape(name) + @"\s+\S+\s+[0-9a-f]+\s+([0-9a-f]+)");
        return m.Success ? long.Parse(m.Groups[1].Value, NumberStyles.HexNumber) : null;
    }

    /// <summary>The pclntab header of an externally linked PIE (no section names it): the one
    /// 8-aligned place holding the 1.20+ magic and the fixed header bytes.</summary>
    private static long PclnHeaderByScan(string path)
    {
        var bytes = File.ReadAllBytes(path);
        byte[] header = [0xF1, 0xFF, 0xFF, 0xFF, 0, 0, 1, 8];
        var hits = new List<long>();
        for (var i = bytes.AsSpan().IndexOf(header); i >= 0;)
        {
            if (i % 8 == 0) hits.Add(i);
            var next = bytes.AsSpan(i + 1).IndexOf(header);
            i = next < 0 ? -1 : i + 1 + next;
        }
        return Assert.Single(hits);
    }

    /// <summary>The function starts the register ABI way: its stack bound check compares against
    /// the goroutine's stack guard through R14 (g), [r14+0x10], in the first two instructions.</summary>
    private static void AssertRegisterAbiEntry(byte[] bytes, GoFunction f)
    {
        var decoder = Decoder.Create(64, new ByteArrayCodeReader(bytes, (int)f.FileOffset, 16), f.Vaddr);
        var first = decoder.Decode();
        var second = decoder.Decode();
        Assert.Contains(new[] { first, second }, i => i.Mnemonic == Mnemonic.Cmp && i.MemoryBase == Register.R14 && i.MemoryDisplacement64 == 0x10);
    }

    private static string CopyToTemp(string src)
    {
        var copy = Path.Combine(Repo.TempDir("go-damaged"), Path.GetFileName(src));
        File.Copy(src, copy);
        return copy;
    }
}
