// Kestrel endpoints for the capture corpus. Bodies are fixed so that the recorder (record.py) can
// state what each exchange must contain without asking the collector.
using Microsoft.AspNetCore.ResponseCompression;

var port = args.Length > 0 ? int.Parse(args[0]) : 5080;
var builder = WebApplication.CreateSlimBuilder();
builder.WebHost.ConfigureKestrel(k => k.ListenLocalhost(port));
builder.Logging.ClearProviders();
builder.Services.AddResponseCompression(o =>
{
    o.Providers.Add<GzipCompressionProvider>();
    o.Providers.Add<BrotliCompressionProvider>();
    o.MimeTypes = ["application/json", "text/plain"];
});
var app = builder.Build();
app.UseWhen(c => c.Request.Path.StartsWithSegments("/compressed"), b => b.UseResponseCompression());

const string Json = "{\"service\":\"kestrel\",\"items\":[1,2,3],\"note\":\"caf\u00e9 \u65e5\u672c\"}";
var text = string.Concat(Enumerable.Range(0, 300).Select(i => $"line {i} of the kestrel stream\n"));

app.MapMethods("/json", ["GET", "HEAD"], (HttpContext c) => Results.Text(Json, "application/json"));
app.MapGet("/stream", async (HttpContext c) =>
{
    c.Response.ContentType = "text/plain";
    var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
    foreach (var chunk in lines.Chunk(100))
    {
        await c.Response.WriteAsync(string.Join("\n", chunk) + "\n");
        await c.Response.Body.FlushAsync();
    }
});
app.MapGet("/compressed/text", (HttpContext c) => Results.Text(text, "text/plain"));
app.MapPost("/echo", async (HttpContext c) =>
{
    using var ms = new MemoryStream();
    await c.Request.Body.CopyToAsync(ms);
    c.Response.ContentType = c.Request.ContentType ?? "application/octet-stream";
    await c.Response.Body.WriteAsync(ms.ToArray());
});
app.MapGet("/empty", () => Results.NoContent());
app.MapGet("/missing", () => Results.NotFound());
app.Run();
