using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Collector.Tests.Support;

public static class Repo
{
    public static string Root { get; } = FindRoot();

    public static string Build => Path.Combine(Root, "build");
    public static string CollectorBinary => Path.Combine(Build, "collector", "Collector");

    private static string FindRoot()
    {
        var dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "Collector.sln")))
            dir = Path.GetDirectoryName(dir);
        return dir ?? throw new InvalidOperationException("Collector.sln not found above " + AppContext.BaseDirectory);
    }

    /// <summary>A free TCP port on loopback (the kernel picks it).</summary>
    public static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    public static string TempDir(string name)
    {
        var d = Path.Combine(Path.GetTempPath(), "collector-tests", name + "-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(d);
        return d;
    }
}

/// <summary>Runs a command to completion and returns what it printed.</summary>
public static class Shell
{
    public static (int Code, string Out, string Err) Run(string file, string args, TimeSpan? timeout = null, string? stdin = null,
        IDictionary<string, string>? env = null)
    {
        var psi = new ProcessStartInfo(file, args)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = stdin is not null,
            UseShellExecute = false,
        };
        if (env is not null) foreach (var (k, v) in env) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        if (stdin is not null)
        {
            p.StandardInput.Write(stdin);
            p.StandardInput.Close();
        }
        var o = p.StandardOutput.ReadToEndAsync();
        var e = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout ?? TimeSpan.FromSeconds(60)))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {args} did not finish");
        }
        p.WaitForExit();
        return (p.ExitCode, o.Result, e.Result);
    }

    /// <summary>Runs a python3 script given as one argument (no shell quoting involved).</summary>
    public static string Python(string script, IDictionary<string, string>? env = null)
    {
        var psi = new ProcessStartInfo(Clients.Python) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(script);
        if (env is not null) foreach (var (k, v) in env) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEndAsync();
        var e = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromSeconds(120))) { p.Kill(true); throw new TimeoutException("python script did not finish"); }
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"python3 exited {p.ExitCode}: {e.Result}");
        return o.Result;
    }

    public static string Check(string file, string args, TimeSpan? timeout = null, string? stdin = null)
    {
        var (code, o, e) = Run(file, args, timeout, stdin);
        if (code != 0) throw new InvalidOperationException($"{file} {args} exited {code}: {e}{o}");
        return o;
    }
}
