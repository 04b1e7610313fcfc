namespace Collector.Tests.Support;

/// <summary>A network namespace made by the test, joined to this host by a veth pair with addresses
/// the test chooses: a second host whose traffic never leaves the machine.</summary>
public sealed class NetNs : IDisposable
{
    public string Name { get; }
    public string HostAddress { get; }
    public string NsAddress { get; }
    private readonly string _hostIf;

    public NetNs()
    {
        var id = Guid.NewGuid().ToString("N")[..6];
        Name = "ctest-" + id;
        _hostIf = "vh" + id;
        var nsIf = "vn" + id;
        var octet = Random.Shared.Next(1, 250);
        HostAddress = $"10.213.{octet}.1";
        NsAddress = $"10.213.{octet}.2";
        Shell.Check("ip", $"netns add {Name}");
        Shell.Check("ip", $"link add {_hostIf} type veth peer name {nsIf}");
        Shell.Check("ip", $"link set {nsIf} netns {Name}");
        Shell.Check("ip", $"addr add {HostAddress}/30 dev {_hostIf}");
        Shell.Check("ip", $"link set {_hostIf} up");
        Shell.Check("ip", $"netns exec {Name} ip addr add {NsAddress}/30 dev {nsIf}");
        Shell.Check("ip", $"netns exec {Name} ip link set {nsIf} up");
        Shell.Check("ip", $"netns exec {Name} ip link set lo up");
    }

    public void Dispose()
    {
        Shell.Run("ip", $"link del {_hostIf}");
        Shell.Run("ip", $"netns del {Name}");
    }
}
