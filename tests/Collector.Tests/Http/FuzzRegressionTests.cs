using Collector.Events;

namespace Collector.Tests.Http;

/// <summary>Inputs that `make fuzz` (tests/Collector.Fuzz, SharpFuzz + afl++) found to break the
/// collector, replayed through the connection table as the kernel would send them: each must be
/// handled without an exception, within the memory budget, and what it cost counted.</summary>
public sealed class FuzzRegressionTests
{
    // Found by make fuzz (target http1), minimized with afl-tmin. A deflate body whose zlib header
    // announces a preset dictionary (FDICT: "x " = 78 20, a valid header check) made zlib ask for a
    // dictionary; .NET raises that as ZLibException (an IOException), which AktoMessage.Decode did
    // not catch (it catches InvalidDataException): the exception left AktoMessage.Write, and the
    // output pipeline dropped the whole exchange as output_error and logged an error for each such
    // message, instead of sending the body as it came and counting the decode failure.
    [Theory]
    [InlineData("000 00 HTTP/1.0\r\n0000:00000\n\r\n", "HTTP/1.0 200\nContent-Encoding:deflate\n0:\n\nx 0000", false)] // as afl-tmin left it
    [InlineData("GET /d HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: 6\r\n\r\nx 0000", true)]
    public void Deflate_body_asking_for_a_preset_dictionary_is_sent_as_it_came(string request, string response, bool complete)
    {
        using var h = new Harness(maxHeaderBytes: 4096, maxBodyBytes: 8192, budgetBytes: 48 * 1024, maxConnections: 3, outputBodyCap: 4096);
        var c = h.Open(3);
        h.Request(c, request);
        h.Response(c, response);
        Assert.InRange(h.Table.RetainedBytes, 0, 48 * 1024);
        h.Table.EndAll("shutdown"); // the fuzz input ended here (a close-delimited body ends cut)
        var x = Assert.Single(h.Exchanges);
        Assert.Equal("x 0000", x.ResponseText);
        Assert.Equal(complete, !x.ResponseCut);
        Assert.Equal(1, h.Metrics.BodyDecodeFailures.Value);
        Assert.Equal(0, h.Metrics.BodiesDecoded.Value);
        Assert.Equal(0, h.Table.RetainedBytes);
        Assert.Equal(0, h.Metrics.BufferedBytes);
    }
}
