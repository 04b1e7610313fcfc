using System.Text.Json;

namespace Collector.Configuration;

/// <summary>The one line that says why the collector did not start. With LOG_FORMAT=json it is a
/// JSON object shaped like the console logger's, so that every line on stderr parses.</summary>
public static class StartupError
{
    public static void Write(string message, bool json)
    {
        if (!json)
        {
            Console.Error.WriteLine(message);
            return;
        }
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("Timestamp", DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ss.fffZ"));
            w.WriteNumber("EventId", 0);
            w.WriteString("LogLevel", "Critical");
            w.WriteString("Category", "collector");
            w.WriteString("Message", message);
            w.WriteEndObject();
        }
        Console.Error.WriteLine(System.Text.Encoding.UTF8.GetString(buffer.ToArray()));
    }

    /// <summary>Whether LOG_FORMAT asks for JSON, read straight from the environment: used when
    /// the settings themselves did not parse.</summary>
    public static bool JsonRequested() =>
        string.Equals(Environment.GetEnvironmentVariable("LOG_FORMAT")?.Trim(), "json", StringComparison.OrdinalIgnoreCase);
}
