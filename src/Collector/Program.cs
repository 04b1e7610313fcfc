using Collector;
using Collector.Configuration;
using Collector.Lifecycle;

// before anything sets up .NET's signal handling (Console does): see Sigint
var sigintWasIgnored = Sigint.Unignore();

if (args.Contains("--help") || args.Contains("-h"))
{
    Console.Out.WriteLine("Collector: captures HTTP traffic of every process on this node with eBPF and ships it to Kafka\n" +
                          "in Akto's message format (stdout when no broker is configured). Settings are environment variables:\n");
    foreach (var (name, dflt, meaning) in SettingsReader.Variables)
        Console.Out.WriteLine($"  {name,-36} {dflt,-20} {meaning}");
    return 0;
}

Settings settings;
try
{
    settings = SettingsReader.FromEnvironment();
}
catch (SettingsException e)
{
    StartupError.Write(e.Message, StartupError.JsonRequested());
    return CollectorHost.ExitConfigError;
}

return await CollectorHost.RunAsync(settings, sigintWasIgnored);
