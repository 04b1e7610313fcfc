using Collector.Events;

namespace Collector.Kernel;

/// <summary>GnuTLS (libgnutls: wget and others); the programs are in bpf/gnutls.c. Its sessions
/// are tied to their sockets by the syscalls made inside a call.</summary>
public sealed class GnuTlsProvider() : SymbolTlsProvider(CaptureSources.GnuTls, ["libgnutls.so*"],
[
    ("gnutls_record_send", "gnutls_send_exit", ProbeKind.Return), ("gnutls_record_send", "gnutls_send_enter", ProbeKind.Entry),
    ("gnutls_record_recv", "gnutls_recv_exit", ProbeKind.Return), ("gnutls_record_recv", "gnutls_recv_enter", ProbeKind.Entry),
]);
