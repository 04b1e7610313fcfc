using System.Diagnostics;
using SharpFuzz;

namespace Collector.Fuzz;

/// <summary>Fuzz entry points (scripts/fuzz.sh runs them under afl-fuzz, with Collector.dll
/// instrumented by sharpfuzz).
/// <code>
///   Collector.Fuzz TARGET                    afl's forkserver: one input per run from stdin
///   Collector.Fuzz TARGET FILE|DIR...        replays inputs (crashes, hangs, a corpus): prints
///                                            each failure with its stack, exit 1 if any failed
///   Collector.Fuzz seeds-from-capture OUTDIR CAPTURE.json...
///                                            http1 seeds from the capture corpus
///                                            (tests/Collector.Tests/Corpus): one script per connection
///   Collector.Fuzz write-http1-seeds DIR     the hand-made http1 seeds (corpus/http1)
/// </code>
/// Targets: http1, http2 (ScriptTarget: the script format is described there), hpack (HpackTarget).</summary>
public static class Program
{
    private static readonly string[] Targets = ["http1", "http2", "hpack"];

    public static int Main(string[] args)
    {
        if (args.Length >= 2 && args[0] == "seeds-from-capture")
            return CaptureSeeds.Write(args[1], args[2..]);
        if (args.Length == 2 && args[0] == "write-http1-seeds")
            return Http1Seeds.Write(args[1]);
        if (args.Length == 0 || !Targets.Contains(args[0]))
        {
            Console.Error.WriteLine($"usage: Collector.Fuzz {{{string.Join('|', Targets)}}} [FILE|DIR...]  |  seeds-from-capture OUTDIR CAPTURE.json...");
            return 2;
        }
        if (args.Length > 1) return Replay(() => Target(args[0]), args[1..]);
        // Nothing of the instrumented Collector.dll may run before SharpFuzz has set up afl's
        // shared memory: the target is made inside the first run. The bytes of one input are
        // read whole: the targets interpret them as a script.
        Input? run = null;
        var name = args[0];
        Fuzzer.OutOfProcess.Run(stream =>
        {
            run ??= Target(name);
            using var copy = new MemoryStream();
            stream.CopyTo(copy);
            run(copy.GetBuffer().AsSpan(0, (int)copy.Length));
        });
        return 0;
    }

    public delegate void Input(ReadOnlySpan<byte> data);

    /// <summary>What the last input did, for targets that tell (replay with FUZZ_VERBOSE=1).</summary>
    private static Func<string>? s_summary;

    public static Input Target(string name)
    {
        switch (name)
        {
            case "http1":
            {
                var t = new ScriptTarget(http2: false);
                s_summary = () => t.Summary;
                return t.Run;
            }
            case "http2":
            {
                var t = new ScriptTarget(http2: true);
                s_summary = () => t.Summary;
                return t.Run;
            }
            case "hpack":
                return HpackTarget.Run;
            default:
                throw new ArgumentException(name);
        }
    }

    private static unsafe int Replay(Func<Input> target, string[] paths)
    {
        // the instrumented Collector.dll writes its edges to SharpFuzz's map: without afl, a map of our own
        if (SharpFuzz.Common.Trace.SharedMem == null)
            SharpFuzz.Common.Trace.SharedMem = (byte*)System.Runtime.InteropServices.NativeMemory.AllocZeroed(1 << 16);
        var run = target();
        var files = paths.SelectMany<string, string>(p => Directory.Exists(p)
            ? Directory.GetFiles(p).Where(f => !Path.GetFileName(f).StartsWith('.') && Path.GetFileName(f) != "README.txt").Order()
            : [p]).ToList();
        var failed = 0;
        var verbose = Environment.GetEnvironmentVariable("FUZZ_VERBOSE") == "1";
        foreach (var f in files)
        {
            var data = File.ReadAllBytes(f);
            var sw = Stopwatch.StartNew();
            try
            {
                run(data);
                if (files.Count <= 20 || verbose) Console.WriteLine($"ok    {sw.Elapsed.TotalMilliseconds,8:F1} ms  {f}");
                if (verbose && s_summary is not null) Console.WriteLine($"      {s_summary()}");
            }
            catch (Exception e)
            {
                failed++;
                Console.WriteLine($"FAIL  {sw.Elapsed.TotalMilliseconds,8:F1} ms  {f}\n  input (base64): {Convert.ToBase64String(data)}\n  {e.ToString().Replace("\n", "\n  ")}");
            }
        }
        Console.WriteLine($"{files.Count - failed} passed, {failed} failed");
        return failed == 0 ? 0 : 1;
    }
}
