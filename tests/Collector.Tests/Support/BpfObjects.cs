using System.Text.Json;

namespace Collector.Tests.Support;

/// <summary>What a process holds in the kernel, read from /proc/PID/fd and fdinfo, and what bpftool
/// lists system-wide.</summary>
public static class BpfObjects
{
    /// <summary>The ids of the BPF links (attached probes) the process holds open.</summary>
    public static List<int> LinkIds(int pid)
    {
        var ids = new List<int>();
        foreach (var fd in Directory.EnumerateFiles($"/proc/{pid}/fd"))
        {
            if (new FileInfo(fd).LinkTarget != "anon_inode:bpf_link") continue;
            foreach (var line in File.ReadLines($"/proc/{pid}/fdinfo/{Path.GetFileName(fd)}"))
                if (line.StartsWith("link_id:")) ids.Add(int.Parse(line["link_id:".Length..].Trim()));
        }
        return ids;
    }

    /// <summary>Every BPF link id in the system (bpftool link show).</summary>
    public static HashSet<int> AllLinkIds()
    {
        var json = Shell.Check("bpftool", "-j link show");
        return JsonDocument.Parse(json).RootElement.EnumerateArray().Select(l => l.GetProperty("id").GetInt32()).ToHashSet();
    }

    /// <summary>/proc/PID/status signal masks as a set of signal numbers.</summary>
    public static HashSet<int> Signals(int pid, string field)
    {
        var line = File.ReadLines($"/proc/{pid}/status").Single(l => l.StartsWith(field + ":"));
        var mask = Convert.ToUInt64(line[(field.Length + 1)..].Trim(), 16);
        return Enumerable.Range(1, 64).Where(s => (mask & (1UL << (s - 1))) != 0).ToHashSet();
    }
}
