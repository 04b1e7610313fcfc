using System.Globalization;
using System.Text.RegularExpressions;
using Collector.Kernel;
using Collector.Tests.Support;

namespace Collector.Tests.Kernel;

/// <summary>Our ELF symbol scan against binutils' readelf on the real TLS libraries of this machine.</summary>
public sealed class ElfSymbolsTests
{
    private static readonly string[] Wanted = ["SSL_write", "SSL_read", "SSL_write_ex", "SSL_read_ex", "SSL_set_fd", "gnutls_record_send", "gnutls_record_recv"];

    public static IEnumerable<object[]> Files() =>
    [
        ["/usr/lib/x86_64-linux-gnu/libssl.so.3"],
        ["/usr/lib/x86_64-linux-gnu/libgnutls.so.30"],
        ["/usr/bin/node"],
    ];

    [Theory]
    [MemberData(nameof(Files))]
    public void File_offsets_match_readelf(string path)
    {
        var ours = ElfSymbols.FindFunctions(path, Wanted);
        var expected = ReadelfOffsets(path);
        Assert.NotEmpty(ours);
        Assert.Equal(expected.Keys.Order(), ours.Keys.Order());
        foreach (var (name, offset) in expected) Assert.Equal(offset, ours[name]);
    }

    [Fact]
    public void A_file_without_the_functions_yields_nothing()
    {
        Assert.Empty(ElfSymbols.FindFunctions("/usr/bin/curl", Wanted));
        var notElf = Path.Combine(Repo.TempDir("elf"), "text");
        File.WriteAllText(notElf, new string('x', 4096));
        Assert.Empty(ElfSymbols.FindFunctions(notElf, Wanted));
    }

    /// <summary>name → st_value - sh_addr + sh_offset of its section, from readelf's dynamic symbols.</summary>
    private static Dictionary<string, ulong> ReadelfOffsets(string path)
    {
        var sections = new Dictionary<int, (ulong Addr, ulong Off)>();
        foreach (Match m in Regex.Matches(Shell.Check("readelf", $"-SW {path}"), @"^\s*\[\s*(\d+)\]\s+\S+\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)", RegexOptions.Multiline))
            sections[int.Parse(m.Groups[1].Value)] = (ulong.Parse(m.Groups[2].Value, NumberStyles.HexNumber), ulong.Parse(m.Groups[3].Value, NumberStyles.HexNumber));
        var result = new Dictionary<string, ulong>();
        // Num: Value Size Type Bind Vis Ndx Name
        foreach (Match m in Regex.Matches(Shell.Check("readelf", $"-W --dyn-syms {path}"),
                     @"^\s*\d+:\s+([0-9a-f]+)\s+\d+\s+(FUNC|IFUNC)\s+\S+\s+\S+\s+(\d+)\s+([A-Za-z_0-9]+)(@\S*)?$", RegexOptions.Multiline))
        {
            var name = m.Groups[4].Value;
            if (!Wanted.Contains(name) || result.ContainsKey(name)) continue;
            var (addr, off) = sections[int.Parse(m.Groups[3].Value)];
            result[name] = ulong.Parse(m.Groups[1].Value, NumberStyles.HexNumber) - addr + off;
        }
        return result;
    }
}
