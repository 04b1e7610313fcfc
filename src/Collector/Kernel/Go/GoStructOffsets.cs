namespace Collector.Kernel.Go;

/// <summary>Where the socket's fd sits behind a <c>*crypto/tls.Conn</c>, per Go version. Go binaries
/// carry no struct layouts outside DWARF (gone with <c>-s -w</c>), so the offsets come from this
/// table, and the tests check each row marked verified against the toolchain of that version: they
/// build tests/Peers/go-offsets with it, which prints the offsets through reflect and follows the
/// chain in memory to the fd the runtime reports. The fields have not moved from go1.15 to go1.23
/// (checked on 1.15, 1.19, 1.21, 1.22 and 1.23); 1.17, 1.18 and 1.20 lie between checked versions
/// with the same layout but no toolchain of theirs is packaged for Debian 12, so they are marked not
/// verified, as is any version newer than the table (given the newest row).</summary>
internal static class GoStructOffsets
{
    private static readonly GoFdOffsets Layout117 = new(TlsConnConn: 0, IfaceItab: 0, IfaceData: 8, TcpConnFd: 0, NetFdSysfd: 16,
        Source: "", Verified: false);

    /// <summary>Minor version → (layout, verified against that toolchain by the tests).</summary>
    internal static readonly IReadOnlyDictionary<int, (GoFdOffsets Layout, bool Verified)> Table = new Dictionary<int, (GoFdOffsets, bool)>
    {
        [17] = (Layout117, false),
        [18] = (Layout117, false),
        [19] = (Layout117, true),
        [20] = (Layout117, false),
        [21] = (Layout117, true),
        [22] = (Layout117, true),
        [23] = (Layout117, true),
    };

    /// <summary>The offsets for Go 1.<paramref name="minor"/>, with where they come from for the log;
    /// null before 1.17 (those binaries are not probed).</summary>
    public static GoFdOffsets? For(int minor)
    {
        if (Table.TryGetValue(minor, out var row))
            return row.Layout with { Source = $"table for go1.{minor}" + (row.Verified ? "" : " (not verified: no toolchain)"), Verified = row.Verified };
        var newest = Table.Keys.Max();
        if (minor > newest)
            return Table[newest].Layout with { Source = $"table for go1.{newest}, assumed for go1.{minor} (not verified)", Verified = false };
        return null;
    }
}
