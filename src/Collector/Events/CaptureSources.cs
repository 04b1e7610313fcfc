namespace Collector.Events;

/// <summary>One source of data events (enum event_source in bpf/collector.h): its label on
/// collector_events_read_total and collector_bytes_read_total, and its "src" name in a capture
/// dump. The label and the dump name are part of the collector's interface (dashboards, recorded
/// corpora): once published they do not change.</summary>
public sealed record CaptureSource(EventSource Id, string MetricLabel, string DumpName)
{
    /// <summary>Plaintext read at a TLS library rather than at the socket syscalls.</summary>
    public bool Tls => Id != EventSource.Syscall;
}

/// <summary>The one table of event sources: the ring-buffer reader counts by it, the metrics
/// make their series from it and the capture dump names sources with it, so that a new TLS source
/// is one line here (plus its provider in Kernel/) instead of a case in each.</summary>
public static class CaptureSources
{
    public static readonly CaptureSource Syscall = new(EventSource.Syscall, "syscall", "syscall");
    public static readonly CaptureSource OpenSsl = new(EventSource.OpenSsl, "openssl", "openssl");
    public static readonly CaptureSource GnuTls = new(EventSource.GnuTls, "gnutls", "gnutls");
    /// <summary>Go's crypto/tls (issue 14): in the table so that its series exists from the start;
    /// nothing sends it until its probes are added.</summary>
    public static readonly CaptureSource GoTls = new(EventSource.GoTls, "go_tls", "go_tls");

    /// <summary>Indexed by the source's id.</summary>
    public static readonly IReadOnlyList<CaptureSource> All = [Syscall, OpenSsl, GnuTls, GoTls];

    /// <summary>Label and dump name of a source id this build does not know (an eBPF object from
    /// another build): counted apart rather than under a real source's name.</summary>
    public const string Unknown = "other";

    public static CaptureSource? Of(EventSource id) => (int)id < All.Count ? All[(int)id] : null;

    public static string MetricLabel(EventSource id) => Of(id)?.MetricLabel ?? Unknown;

    public static string DumpName(EventSource id) => Of(id)?.DumpName ?? Unknown;

    /// <summary>The source a capture dump's "src" names, or null.</summary>
    public static CaptureSource? FromDumpName(string name)
    {
        foreach (var s in All)
            if (s.DumpName == name) return s;
        return null;
    }
}
