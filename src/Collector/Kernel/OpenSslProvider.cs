using Collector.Events;

namespace Collector.Kernel;

/// <summary>OpenSSL: libssl, and programs that link it in and export its functions (node). The
/// programs are in bpf/openssl.c. SSL_write_ex/SSL_read_ex return through the same programs as
/// SSL_write/SSL_read: the byte count is read at return from the size_t * saved at entry.</summary>
public sealed class OpenSslProvider() : SymbolTlsProvider(CaptureSources.OpenSsl, ["libssl.so*"],
[
    ("SSL_write", "ssl_write_exit", ProbeKind.Return), ("SSL_write", "ssl_write_enter", ProbeKind.Entry),
    ("SSL_read", "ssl_read_exit", ProbeKind.Return), ("SSL_read", "ssl_read_enter", ProbeKind.Entry),
    ("SSL_write_ex", "ssl_write_exit", ProbeKind.Return), ("SSL_write_ex", "ssl_write_ex_enter", ProbeKind.Entry),
    ("SSL_read_ex", "ssl_read_exit", ProbeKind.Return), ("SSL_read_ex", "ssl_read_ex_enter", ProbeKind.Entry),
    // the calls that tie a session to its socket, and its end (its address may name the next one)
    ("SSL_set_fd", "ssl_set_fd_enter", ProbeKind.Entry), ("SSL_set_rfd", "ssl_set_fd_enter", ProbeKind.Entry),
    ("SSL_set_wfd", "ssl_set_fd_enter", ProbeKind.Entry), ("SSL_free", "ssl_free_enter", ProbeKind.Entry),
]);
