using System.Net;
using System.Text.Json;
using Collector.Events;

namespace Collector.Connections;

/// <summary>Hidden debug option CAPTURE_DUMP_PATH: appends every kernel event the connection table
/// receives to a file, one JSON object a line, payloads in base64. Off by default. It is how the
/// test corpus (tests/Collector.Tests/Corpus) was recorded, and how a user can hand over the bytes
/// of a misparsed exchange. It writes on the event thread: for debugging only.
///
/// Lines: {"type":"open","ts":…,"tgid":…,"fd":…,"gen":…,"family":2|10,"local":"addr","localPort":…,
/// "remote":"addr","remotePort":…,"origin":"accept|connect|unknown","comm":"…"}
/// {"type":"data",…,"pos":…,"callBytes":…,"dir":"egress|ingress","src":"syscall|openssl|gnutls|go_tls","data":"base64"}
/// (src: <see cref="CaptureSources"/>)
/// {"type":"close",…,"egressBytes":…,"ingressBytes":…} {"type":"exit","ts":…,"tgid":…}</summary>
public sealed class CaptureDump : IDisposable
{
    private readonly FileStream _file;
    private readonly Utf8JsonWriter _writer;

    public CaptureDump(string path)
    {
        _file = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read, 1 << 16);
        _writer = new Utf8JsonWriter(_file);
    }

    public static CaptureDump? Open(string? path) => string.IsNullOrEmpty(path) ? null : new CaptureDump(path);

    private void Head(string type, in EventHeader h)
    {
        _writer.WriteStartObject();
        _writer.WriteString("type", type);
        _writer.WriteNumber("ts", h.TimestampNs);
        _writer.WriteNumber("tgid", h.Tgid);
        _writer.WriteNumber("fd", h.Fd);
        _writer.WriteNumber("gen", h.Generation);
    }

    private void End()
    {
        _writer.WriteEndObject();
        _writer.Flush();
        _writer.Reset();
        _file.WriteByte((byte)'\n');
    }

    public unsafe void Open(in OpenEvent e)
    {
        Head("open", e.Header);
        _writer.WriteNumber("family", e.Family);
        fixed (byte* l = e.LocalAddr)
        fixed (byte* r = e.RemoteAddr)
        fixed (byte* c = e.Comm)
        {
            _writer.WriteString("local", Address(e.Family, new ReadOnlySpan<byte>(l, 16)));
            _writer.WriteNumber("localPort", e.LocalPort);
            _writer.WriteString("remote", Address(e.Family, new ReadOnlySpan<byte>(r, 16)));
            _writer.WriteNumber("remotePort", e.RemotePort);
            _writer.WriteString("origin", e.Origin switch
            {
                ConnectionOrigin.Accept => "accept",
                ConnectionOrigin.Connect => "connect",
                _ => "unknown",
            });
            var comm = new ReadOnlySpan<byte>(c, EventLayout.CommLength);
            var end = comm.IndexOf((byte)0);
            _writer.WriteString("comm", System.Text.Encoding.UTF8.GetString(end < 0 ? comm : comm[..end]));
        }
        End();
    }

    public void Data(in DataEventHeader h, ReadOnlySpan<byte> payload)
    {
        Head("data", h.Header);
        _writer.WriteNumber("pos", h.Position);
        _writer.WriteNumber("callBytes", h.CallBytes);
        _writer.WriteString("dir", h.Direction == StreamDirection.Egress ? "egress" : "ingress");
        _writer.WriteString("src", CaptureSources.DumpName(h.Source));
        _writer.WriteBase64String("data", payload);
        End();
    }

    public void Close(in CloseEvent e)
    {
        Head("close", e.Header);
        _writer.WriteNumber("egressBytes", e.EgressBytes);
        _writer.WriteNumber("ingressBytes", e.IngressBytes);
        End();
    }

    public void Exit(uint tgid, ulong timestampNs)
    {
        _writer.WriteStartObject();
        _writer.WriteString("type", "exit");
        _writer.WriteNumber("ts", timestampNs);
        _writer.WriteNumber("tgid", tgid);
        End();
    }

    public void Flush() => _file.Flush();

    private static string Address(ushort family, ReadOnlySpan<byte> bytes) =>
        (family == 2 ? new IPAddress(bytes[..4]) : new IPAddress(bytes)).ToString();

    public void Dispose()
    {
        _writer.Dispose();
        _file.Dispose();
    }
}
